//! Retention policies: one row per tenant (`user_id` empty) and per user override.

use cairn_token::{TenantId, UserId};

use super::{Db, DbError, col};
use crate::retention::RetentionPolicy;

/// A stored policy: the one in effect when it was last written, and a shortening waiting for
/// its time (`docs/design/0009-retention-and-prune.md` §5.3).
pub type StoredPolicy = (RetentionPolicy, Option<(RetentionPolicy, i64)>);

fn policy_col(row: &sqlx::any::AnyRow, i: usize) -> Result<RetentionPolicy, DbError> {
    serde_json::from_str(&col::<String>(row, i)?).map_err(|_| DbError::Invalid("retention policy"))
}

impl Db {
    /// The tenant's policy (`user` none) or the user's override, if one was ever written.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn retention(
        &self,
        tenant: &TenantId,
        user: Option<&UserId>,
    ) -> Result<Option<StoredPolicy>, DbError> {
        let row = sqlx::query(
            "SELECT policy, pending, pending_from_unix FROM retention_policies
              WHERE tenant = $1 AND user_id = $2",
        )
        .bind(tenant.as_str())
        .bind(user.map_or("", UserId::as_str))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let policy = policy_col(&r, 0)?;
            let pending = match col::<Option<String>>(&r, 1)? {
                Some(_) => Some((policy_col(&r, 1)?, col::<i64>(&r, 2)?)),
                None => None,
            };
            Ok((policy, pending))
        })
        .transpose()
    }

    /// Writes the tenant's policy (`user` none) or the user's override.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn set_retention(
        &self,
        tenant: &TenantId,
        user: Option<&UserId>,
        stored: &StoredPolicy,
    ) -> Result<(), DbError> {
        let encode = |p: &RetentionPolicy| {
            serde_json::to_string(p).map_err(|_| DbError::Invalid("retention policy"))
        };
        let (policy, pending) = stored;
        let pending_text = pending.as_ref().map(|(p, _)| encode(p)).transpose()?;
        sqlx::query(
            "INSERT INTO retention_policies
                    (tenant, user_id, policy, pending, pending_from_unix, changed_unix)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant, user_id) DO UPDATE SET
                    policy = excluded.policy, pending = excluded.pending,
                    pending_from_unix = excluded.pending_from_unix,
                    changed_unix = excluded.changed_unix",
        )
        .bind(tenant.as_str())
        .bind(user.map_or("", UserId::as_str))
        .bind(encode(policy)?)
        .bind(pending_text)
        .bind(pending.as_ref().map(|(_, from)| *from))
        .bind(self.unix_now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The operator's floor: the least any policy keeps ([`RetentionPolicy::FLOOR`] until the
    /// operator sets one).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn retention_floor(&self) -> Result<RetentionPolicy, DbError> {
        self.operator_setting("retention_floor", "retention policy")
            .await
            .map(|v| v.unwrap_or(RetentionPolicy::FLOOR))
    }

    /// The operator's setting `name` (JSON), if set; `what` names it in the error when it does
    /// not parse.
    pub(crate) async fn operator_setting<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        what: &'static str,
    ) -> Result<Option<T>, DbError> {
        let row = sqlx::query("SELECT value FROM operator_settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            serde_json::from_str(&col::<String>(&r, 0)?).map_err(|_| DbError::Invalid(what))
        })
        .transpose()
    }

    /// Sets the operator's setting `name` to `value` (as JSON).
    pub(crate) async fn set_operator_setting<T: serde::Serialize>(
        &self,
        name: &str,
        value: &T,
        what: &'static str,
    ) -> Result<(), DbError> {
        let value = serde_json::to_string(value).map_err(|_| DbError::Invalid(what))?;
        sqlx::query(
            "INSERT INTO operator_settings (name, value, changed_unix)
             VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value,
                    changed_unix = excluded.changed_unix",
        )
        .bind(name)
        .bind(value)
        .bind(self.unix_now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Sets the operator's floor.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn set_retention_floor(&self, floor: &RetentionPolicy) -> Result<(), DbError> {
        self.set_operator_setting("retention_floor", floor, "retention policy")
            .await
    }
}
