//! Backends for this workspace's test suites: the embedded defaults, or a fresh PostgreSQL
//! database and a fresh S3 prefix on the servers `scripts/services.sh` starts.
//!
//! | variable | meaning |
//! | --- | --- |
//! | `CAIRN_TEST_BACKENDS` | `shared`: suites that honour it run on PostgreSQL and S3; else embedded |
//! | `CAIRN_TEST_POSTGRES_URL` | a PostgreSQL URL whose user may create databases |
//! | `CAIRN_TEST_S3_ENDPOINT` | an S3-compatible endpoint; bucket `CAIRN_TEST_S3_BUCKET` (default `cairn-test`) exists |

use sqlx::Executor;

use crate::data::Backends;

/// Whether the suites should run on the shared backends (`CAIRN_TEST_BACKENDS=shared`).
#[must_use]
pub fn shared_requested() -> bool {
    std::env::var("CAIRN_TEST_BACKENDS").is_ok_and(|v| v == "shared")
}

/// [`shared`] if [`shared_requested`], else the embedded defaults.
///
/// # Errors
/// As [`shared`].
pub async fn from_env() -> Result<Backends, String> {
    if shared_requested() {
        shared().await
    } else {
        Ok(Backends::default())
    }
}

/// A new PostgreSQL database (`cairn_<random>`) and a new S3 prefix in the test bucket.
///
/// # Errors
/// A variable is missing (run through `scripts/test.sh`), or the database cannot be made.
pub async fn shared() -> Result<Backends, String> {
    let pg = std::env::var("CAIRN_TEST_POSTGRES_URL")
        .map_err(|_| "CAIRN_TEST_POSTGRES_URL is not set: run the tests with scripts/test.sh")?;
    let endpoint = std::env::var("CAIRN_TEST_S3_ENDPOINT")
        .map_err(|_| "CAIRN_TEST_S3_ENDPOINT is not set: run the tests with scripts/test.sh")?;
    let bucket = std::env::var("CAIRN_TEST_S3_BUCKET").unwrap_or_else(|_| "cairn-test".into());
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).map_err(|e| e.to_string())?;
    let name = format!("cairn_{}", hex::encode(id));
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&pg)
        .await
        .map_err(|e| format!("connecting to {pg}: {e}"))?;
    pool.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .map_err(|e| format!("creating database {name}: {e}"))?;
    pool.close().await;
    // The same server and credentials, the new database.
    let (base, query) = match pg.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (pg.as_str(), String::new()),
    };
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    Ok(Backends::default()
        .with_database_url(format!("{base}/{name}{query}"))
        .with_s3(bucket, Some(endpoint), Some(name)))
}

/// The multipart segment store under the archives, for the tests that crash it between steps.
pub use crate::parts::{Fence, PartSegments, PartWriter};
