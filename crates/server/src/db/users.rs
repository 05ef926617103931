//! Users, their roles, and revoked token ids.

use cairn_token::{Role, TenantId, TokenId, UserId};

use super::{Db, DbError, col, id_col};

/// A user row.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UserRow {
    /// The user id.
    pub id: UserId,
    /// Its role (serialized by its wire name: `user`, `admin` or `service`).
    #[serde(serialize_with = "role_name")]
    pub role: Role,
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
        let row = sqlx::query("SELECT id, role FROM users WHERE tenant = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(UserRow {
                id: id_col(&r, 0, "user id")?,
                role: role_col(&r, 1)?,
            })
        })
        .transpose()
    }

    /// Every user of the tenant.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn users(&self, tenant: &TenantId) -> Result<Vec<UserRow>, DbError> {
        let rows = sqlx::query("SELECT id, role FROM users WHERE tenant = $1 ORDER BY id")
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(UserRow {
                    id: id_col(&r, 0, "user id")?,
                    role: role_col(&r, 1)?,
                })
            })
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
