//! Server metadata in SQL: tenants, users, devices, revoked tokens, archives, event batches and
//! events, escrowed keys, the audit log, archive leases. SQLite under the data directory by
//! default (WAL, `synchronous=FULL`: a commit is durable when it returns); PostgreSQL when the
//! database URL names one (`postgres://...`), which is what several server instances share.
//!
//! One set of queries serves both engines (sqlx's `Any` driver, `$N` placeholders, types both
//! engines decode the same way: 64-bit integers, text, bytes). Each engine has its own list of
//! migrations with the same versions and meaning: the schema's creation differs
//! (`migrations/{sqlite,postgres}/0001_init.sql`: BLOB or BYTEA, row ids); later migrations are
//! SQL both engines accept (`migrations/portable/`).

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use cairn_token::{DeviceId, Role, TenantId, TokenId, UserId};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor, Row};

/// What the metadata layer can report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The database failed (I/O, constraint, busy past its timeout).
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    /// A migration failed.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row holds something the schema does not allow (a hand-edited database).
    #[error("database holds an invalid {0}")]
    Invalid(&'static str),
}

/// The migrations, compiled into the binary (without sqlx's macros, which would build SQLite a
/// second time for the compiler). Append only: a released migration never changes. The two
/// engines' lists have the same versions and the same meaning.
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "event indexes",
        include_str!("../migrations/portable/0002_event_indexes.sql"),
    ),
    (
        3,
        "event ids and archive leases",
        include_str!("../migrations/portable/0003_event_ids_and_leases.sql"),
    ),
    (
        4,
        "console",
        include_str!("../migrations/portable/0004_console.sql"),
    ),
    (
        5,
        "archive witness",
        include_str!("../migrations/portable/0005_archive_witness.sql"),
    ),
];

/// PostgreSQL's migrations (see [`SQLITE_MIGRATIONS`]).
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "event indexes",
        include_str!("../migrations/portable/0002_event_indexes.sql"),
    ),
    (
        3,
        "event ids and archive leases",
        include_str!("../migrations/portable/0003_event_ids_and_leases.sql"),
    ),
    (
        4,
        "console",
        include_str!("../migrations/portable/0004_console.sql"),
    ),
    (
        5,
        "archive witness",
        include_str!("../migrations/portable/0005_archive_witness.sql"),
    ),
];

/// Which engine a [`Db`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Engine {
    /// SQLite: one file, one process (the embedded default).
    Sqlite,
    /// PostgreSQL: shared by any number of server instances.
    Postgres,
}

#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl<'s> sqlx::migrate::MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> futures_util::future::BoxFuture<
        's,
        Result<Vec<sqlx::migrate::Migration>, sqlx::error::BoxDynError>,
    > {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|&(version, description, sql)| {
                    sqlx::migrate::Migration::new(
                        version,
                        description.into(),
                        sqlx::migrate::MigrationType::Simple,
                        sql.into(),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// The metadata database.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    engine: Engine,
    /// The clock of the times it records (created, changed, audited).
    clock: crate::clock::SharedClock,
    /// The PostgreSQL URL, for the connection that listens for released leases.
    url: Option<Arc<str>>,
}

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
}

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

/// A tenant's storage quota and use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Quota {
    /// The most bytes the tenant may store.
    pub quota_bytes: i64,
    /// What it stores now.
    pub used_bytes: i64,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl Db {
    /// The same database, recording times by `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: crate::clock::SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Now, by its clock (Unix seconds).
    pub(crate) fn unix_now(&self) -> i64 {
        self.clock.now().unix()
    }

    /// Opens (creating if needed) the SQLite database at `path` and runs the migrations.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn open_sqlite(path: &Path) -> Result<Self, DbError> {
        let path = path
            .to_str()
            .ok_or(DbError::Invalid("database path (not UTF-8)"))?;
        // Every byte but the unreserved ones percent-encoded, so that `%`, `?` or `#` in the
        // path stay part of it (the driver decodes the path).
        let mut url = String::from("sqlite://");
        for b in path.bytes() {
            if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
                url.push(char::from(b));
            } else {
                url.push_str(&format!("%{b:02X}"));
            }
        }
        url.push_str("?mode=rwc");
        Self::connect(AnyConnectOptions::from_str(&url)?, Engine::Sqlite, 8).await
    }

    /// Opens the database at `url`: `postgres://` (or `postgresql://`) for PostgreSQL,
    /// `sqlite://PATH` for SQLite; runs the migrations.
    ///
    /// # Errors
    /// [`DbError`]; [`DbError::Invalid`] for another scheme.
    pub async fn open(url: &str) -> Result<Self, DbError> {
        let engine = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Engine::Postgres
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            return Self::open_sqlite(Path::new(path)).await;
        } else {
            return Err(DbError::Invalid("database URL (postgres:// or sqlite://)"));
        };
        let mut db = Self::connect(AnyConnectOptions::from_str(url)?, engine, 16).await?;
        db.url = Some(Arc::from(url));
        Ok(db)
    }

    async fn connect(
        options: AnyConnectOptions,
        engine: Engine,
        connections: u32,
    ) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(connections)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if engine == Engine::Sqlite {
                        // Durable commits (WAL + FULL), enforced references, and waiting for
                        // the write lock rather than failing at once.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let migrations = match engine {
            Engine::Sqlite => SQLITE_MIGRATIONS,
            Engine::Postgres => POSTGRES_MIGRATIONS,
        };
        sqlx::migrate::Migrator::new(Embedded(migrations))
            .await?
            .run(&pool)
            .await?;
        Ok(Self {
            pool,
            engine,
            clock: crate::clock::system(),
            url: None,
        })
    }

    /// The pool, for the services' own queries (and tests that inspect rows).
    #[must_use]
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The engine it runs on.
    #[must_use]
    pub fn engine(&self) -> Engine {
        self.engine
    }

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

    /// Closes every connection and waits until they are closed (an SQLite database's files
    /// are then at rest: a copy of the data directory taken afterwards is consistent). Every
    /// clone of this handle is closed with it.
    pub async fn close(&self) {
        self.pool.close().await;
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
            "INSERT INTO snapshots (tenant, user_id, id, device, bytes, received_unix)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, user_id, id) DO NOTHING",
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
            "SELECT id, device, bytes, received_unix FROM snapshots
              WHERE tenant = $1 AND user_id = $2 ORDER BY received_unix, id",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(SnapshotRow {
                    id: col(&r, 0)?,
                    device: col::<Option<String>>(&r, 1)?
                        .map(|d| d.parse().map_err(|_| DbError::Invalid("device id")))
                        .transpose()?,
                    bytes: col(&r, 2)?,
                    received_unix: col(&r, 3)?,
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

/// Column `i` of `row` as an id (`TenantId`, `UserId`, `DeviceId`, `TokenId`): text that is
/// not one (a hand edit) is [`DbError::Invalid`] naming `what`.
fn id_col<T: std::str::FromStr>(
    row: &sqlx::any::AnyRow,
    i: usize,
    what: &'static str,
) -> Result<T, DbError> {
    col::<String>(row, i)?
        .parse()
        .map_err(|_| DbError::Invalid(what))
}

/// Column `i` of `row` as a `T`. A value of another type (SQLite keeps whatever a hand edit put
/// in a column) or a missing column is a [`DbError`], never a panic as `Row::get` would make it.
pub(crate) fn col<'r, T>(row: &'r sqlx::any::AnyRow, i: usize) -> Result<T, DbError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    Ok(row.try_get(i)?)
}

#[cfg(test)]
mod tests {
    // Test code: a panic here is a test failure with a message, which is what we want.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// The tenant these tests use.
    fn t() -> cairn_token::TenantId {
        cairn_token::TenantId::new("t").unwrap()
    }

    /// Its user.
    fn u() -> cairn_token::UserId {
        cairn_token::UserId::new("u").unwrap()
    }

    /// SQLite keeps any value in any column, so a hand-edited database can hold text where the
    /// schema says integer. Reading such a row is a typed error, not a panic of the request.
    #[test]
    fn a_column_of_another_type_is_an_error() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let db = Db::open_sqlite(&dir.path().join("m.sqlite")).await.unwrap();
            db.add_tenant(&t(), 1 << 30).await.unwrap();
            db.add_user(&t(), &u(), cairn_token::Role::User)
                .await
                .unwrap();
            assert_eq!(db.quota(&t()).await.unwrap().unwrap().quota_bytes, 1 << 30);
            assert_eq!(db.users(&t()).await.unwrap().len(), 1);

            sqlx::query("UPDATE tenants SET quota_bytes = 'a lot' WHERE id = 't'")
                .execute(db.pool())
                .await
                .unwrap();
            sqlx::query("UPDATE users SET role = x'00ff' WHERE id = 'u'")
                .execute(db.pool())
                .await
                .unwrap();
            assert!(matches!(db.quota(&t()).await, Err(DbError::Sql(_))));
            assert!(matches!(db.quotas().await, Err(DbError::Sql(_))));
            assert!(matches!(db.user(&t(), &u()).await, Err(DbError::Sql(_))));
            assert!(matches!(db.users(&t()).await, Err(DbError::Sql(_))));
        });
    }
}
