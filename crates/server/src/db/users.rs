//! Users, their roles and states, and revoked token ids.

use cairn_token::{DeviceId, Role, TenantId, TokenId, UserId};

use super::{Db, DbError, col, id_col};

/// A user row.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UserRow {
    /// The user id.
    pub id: UserId,
    /// Its role (serialized by its wire name: `user`, `admin` or `service`).
    #[serde(serialize_with = "role_name")]
    pub role: Role,
    /// Where it is in its life.
    pub state: UserState,
}

/// Where a user is in their life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UserState {
    /// Their tokens and their devices' tokens are accepted.
    Active,
    /// Every token of theirs (device tokens included) is refused and their devices cannot
    /// refresh, until they are resumed.
    Suspended,
    /// Suspended for good, every device deauthorized. The archive stays (retention and holds
    /// decide what becomes of it).
    Removed,
}

impl UserState {
    /// The name the database and the API use.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Removed => "removed",
        }
    }

    /// The state of a name; `None` for anything else.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            "removed" => Some(Self::Removed),
            _ => None,
        }
    }
}

fn state_col(row: &sqlx::any::AnyRow, i: usize) -> Result<UserState, DbError> {
    UserState::parse(&col::<String>(row, i)?).ok_or(DbError::Invalid("user state"))
}

/// The user's state inside `tx`, if there is such a user.
async fn user_state(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &TenantId,
    user: &UserId,
) -> Result<Option<UserState>, DbError> {
    sqlx::query("SELECT state FROM users WHERE tenant = $1 AND id = $2")
        .bind(tenant.as_str())
        .bind(user.as_str())
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| state_col(&r, 0))
        .transpose()
}

fn role_name<S: serde::Serializer>(role: &Role, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(role.as_str())
}

fn role_col(row: &sqlx::any::AnyRow, i: usize) -> Result<Role, DbError> {
    Role::parse(&col::<String>(row, i)?).ok_or(DbError::Invalid("user role"))
}

impl Db {
    /// Adds a user. Returns `false` if the user exists or the tenant does not.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn add_user(
        &self,
        tenant: &TenantId,
        user: &UserId,
        role: Role,
    ) -> Result<bool, DbError> {
        if !self.tenant_exists(tenant).await? {
            return Ok(false);
        }
        let done = sqlx::query(
            "INSERT INTO users (tenant, id, role, created_unix) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant, id) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .bind(role.as_str())
        .bind(self.unix_now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The user, if it exists.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn user(&self, tenant: &TenantId, user: &UserId) -> Result<Option<UserRow>, DbError> {
        let row = sqlx::query("SELECT id, role, state FROM users WHERE tenant = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(UserRow {
                id: id_col(&r, 0, "user id")?,
                role: role_col(&r, 1)?,
                state: state_col(&r, 2)?,
            })
        })
        .transpose()
    }

    /// Every user of the tenant.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn users(&self, tenant: &TenantId) -> Result<Vec<UserRow>, DbError> {
        let rows = sqlx::query("SELECT id, role, state FROM users WHERE tenant = $1 ORDER BY id")
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(UserRow {
                    id: id_col(&r, 0, "user id")?,
                    role: role_col(&r, 1)?,
                    state: state_col(&r, 2)?,
                })
            })
            .collect()
    }

    /// Suspends (`suspend`) or resumes an active or suspended user. `None` if there is no such
    /// user; else the state it was in. A removed user stays removed.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn set_user_suspended(
        &self,
        tenant: &TenantId,
        user: &UserId,
        suspend: bool,
    ) -> Result<Option<UserState>, DbError> {
        let mut tx = self.pool.begin().await?;
        let Some(before) = user_state(&mut tx, tenant, user).await? else {
            return Ok(None);
        };
        if before != UserState::Removed {
            let to = if suspend {
                UserState::Suspended
            } else {
                UserState::Active
            };
            sqlx::query(
                "UPDATE users SET state = $1, changed_unix = $2
                 WHERE tenant = $3 AND id = $4 AND state <> 'removed'",
            )
            .bind(to.as_str())
            .bind(self.unix_now())
            .bind(tenant.as_str())
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some(before))
    }

    /// Removes a user, in one transaction: their state becomes `removed` (final) and every
    /// device of theirs is deauthorized. `None` if there is no such user; else the devices
    /// deauthorized now (none if the user was removed already).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn remove_user(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Option<Vec<DeviceId>>, DbError> {
        let now = self.unix_now();
        let mut tx = self.pool.begin().await?;
        let Some(before) = user_state(&mut tx, tenant, user).await? else {
            return Ok(None);
        };
        if before == UserState::Removed {
            return Ok(Some(Vec::new()));
        }
        sqlx::query(
            "UPDATE users SET state = 'removed', changed_unix = $1 WHERE tenant = $2 AND id = $3",
        )
        .bind(now)
        .bind(tenant.as_str())
        .bind(user.as_str())
        .execute(&mut *tx)
        .await?;
        let devices = sqlx::query(
            "SELECT id FROM devices WHERE tenant = $1 AND user_id = $2 AND state <> 'deauthorized'",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|r| id_col(&r, 0, "device id"))
        .collect::<Result<Vec<DeviceId>, DbError>>()?;
        sqlx::query(
            "UPDATE devices SET state = 'deauthorized', enrollment_jti = NULL, changed_unix = $1
             WHERE tenant = $2 AND user_id = $3 AND state <> 'deauthorized'",
        )
        .bind(now)
        .bind(tenant.as_str())
        .bind(user.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(devices))
    }

    /// Every user who is suspended or removed, as (tenant, user): whose tokens are refused.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn inactive_users(&self) -> Result<Vec<(TenantId, UserId)>, DbError> {
        let rows = sqlx::query("SELECT tenant, id FROM users WHERE state <> 'active'")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| Ok((id_col(&r, 0, "tenant id")?, id_col(&r, 1, "user id")?)))
            .collect()
    }

    /// Records a revoked token id.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn revoke_token(&self, tenant: &TenantId, token_id: &TokenId) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO revoked_tokens (tenant, token_id, revoked_unix) VALUES ($1, $2, $3)
             ON CONFLICT (tenant, token_id) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(token_id.as_str())
        .bind(self.unix_now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every revoked token id, as (tenant, token id).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn revoked_tokens(&self) -> Result<Vec<(TenantId, TokenId)>, DbError> {
        let rows = sqlx::query("SELECT tenant, token_id FROM revoked_tokens")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| Ok((id_col(&r, 0, "tenant id")?, id_col(&r, 1, "token id")?)))
            .collect()
    }
}
