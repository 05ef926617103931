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
//!
//! | module | what |
//! | --- | --- |
//! | this one | [`Db`]: opening, migrations, the pool, the clock; reading columns without panics |
//! | `tenants` | tenants and quotas ([`Quota`]); charging and giving back stored bytes |
//! | `users` | users and roles ([`UserRow`]); revoked token ids |
//! | `devices` | devices ([`DeviceRow`], [`DeviceState`]): registration, enrollment, last seen |
//! | `archives` | each user's archive: id, witness, damage ([`Damage`]), snapshot arrivals ([`SnapshotRow`]) |
//! | `holds` | legal holds on users and devices ([`HoldRow`], [`Lifted`]) |
//! | `leases` | which instance may write an archive now; notifications of leases given back |
//! | `tokens` | tokens as issued, by id ([`IssuedRow`]): never the token itself |
//! | `audit` | the audit log ([`AuditRow`]) |
//! | `retention` | retention policies, the tenant's and users' overrides ([`StoredPolicy`]); the operator's floor |

mod archives;
mod audit;
mod devices;
mod holds;
mod leases;
mod prune;
mod retention;
mod tenants;
mod tokens;
mod users;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor, Row};

pub use self::archives::{Damage, SnapshotRow};
pub use self::audit::AuditRow;
pub use self::devices::{DeviceRow, DeviceState};
pub use self::holds::{HoldRow, Lifted};
pub use self::retention::StoredPolicy;
pub use self::tenants::Quota;
pub use self::tokens::IssuedRow;
pub use self::users::{UserRow, UserState};

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
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "event indexes",
        include_str!("../../migrations/portable/0002_event_indexes.sql"),
    ),
    (
        3,
        "event ids and archive leases",
        include_str!("../../migrations/portable/0003_event_ids_and_leases.sql"),
    ),
    (
        4,
        "console",
        include_str!("../../migrations/portable/0004_console.sql"),
    ),
    (
        5,
        "archive witness",
        include_str!("../../migrations/portable/0005_archive_witness.sql"),
    ),
    (
        6,
        "user state",
        include_str!("../../migrations/portable/0006_user_state.sql"),
    ),
    (
        7,
        "retention policies",
        include_str!("../../migrations/portable/0007_retention.sql"),
    ),
    (
        8,
        "legal holds",
        include_str!("../../migrations/portable/0008_holds.sql"),
    ),
    (
        9,
        "issued tokens",
        include_str!("../../migrations/portable/0009_issued_tokens.sql"),
    ),
    (
        10,
        "operator settings",
        include_str!("../../migrations/portable/0010_operator_settings.sql"),
    ),
    (
        11,
        "prune",
        include_str!("../../migrations/portable/0011_prune.sql"),
    ),
    (
        12,
        "signing keys",
        include_str!("../../migrations/portable/0012_signing_keys.sql"),
    ),
];

/// PostgreSQL's migrations (see [`SQLITE_MIGRATIONS`]).
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "event indexes",
        include_str!("../../migrations/portable/0002_event_indexes.sql"),
    ),
    (
        3,
        "event ids and archive leases",
        include_str!("../../migrations/portable/0003_event_ids_and_leases.sql"),
    ),
    (
        4,
        "console",
        include_str!("../../migrations/portable/0004_console.sql"),
    ),
    (
        5,
        "archive witness",
        include_str!("../../migrations/portable/0005_archive_witness.sql"),
    ),
    (
        6,
        "user state",
        include_str!("../../migrations/portable/0006_user_state.sql"),
    ),
    (
        7,
        "retention policies",
        include_str!("../../migrations/portable/0007_retention.sql"),
    ),
    (
        8,
        "legal holds",
        include_str!("../../migrations/portable/0008_holds.sql"),
    ),
    (
        9,
        "issued tokens",
        include_str!("../../migrations/portable/0009_issued_tokens.sql"),
    ),
    (
        10,
        "operator settings",
        include_str!("../../migrations/portable/0010_operator_settings.sql"),
    ),
    (
        11,
        "prune",
        include_str!("../../migrations/portable/0011_prune.sql"),
    ),
    (
        12,
        "signing keys",
        include_str!("../../migrations/portable/0012_signing_keys.sql"),
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

    /// Closes every connection and waits until they are closed (an SQLite database's files
    /// are then at rest: a copy of the data directory taken afterwards is consistent). Every
    /// clone of this handle is closed with it.
    pub async fn close(&self) {
        self.pool.close().await;
    }
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

/// [`id_col`] for a column that may be NULL.
fn opt_id_col<T: std::str::FromStr>(
    row: &sqlx::any::AnyRow,
    i: usize,
    what: &'static str,
) -> Result<Option<T>, DbError> {
    col::<Option<String>>(row, i)?
        .map(|v| v.parse().map_err(|_| DbError::Invalid(what)))
        .transpose()
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
