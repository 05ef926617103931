//! Cairn's multi-tenant HTTPS service: it receives sealed blocks and file events from agents
//! over TLS, labels events with the tenant, user and device of the verified token, appends
//! blocks to each user's archive in the opaque form they arrived in, holds escrowed keys, and
//! lets nobody reach what is not theirs.
//!
//! Every module is private; the crate root re-exports what a user names, by job:
//!
//! | items | job | module |
//! | --- | --- | --- |
//! | [`DataDir`], [`Backends`], [`Server`], [`ServerBuilder`], [`Embedded`] | the data directory (`init`: PKI, token key, escrow key pair, storage key ring, database; `services`), the server assembled (one builder for `server serve` and [`Embedded`]), the whole server in-process on loopback | `data`, `server`, `embedded` |
//! | [`ROUTES`], [`router`], [`AppState`], [`Services`] | every route with its access decision, body limit and handler; handlers scope each request to its owner | `routes` (`console`: the console's files) |
//! | [`Archives`] | per-user `cairn-archive` logs; active segment staged locally, sealed segments in an object store | `archives`, `segments`, `parts` |
//! | [`EventsError`] | event ingest (provenance from the token, idempotent, durable), search, OCSF export; sealed at rest with [`KeyRing`] | `events`, `atrest` |
//! | [`Kek`], [`recover`] | the key-encryption key outside the data directory that seals its secret files (storage key ring, escrow secret, token signing key); escrowed keys (one-way modes enforced server side, audited recovery re-wrapped to the admin's key) | `kek`, `keystore` |
//! | [`Db`] | metadata through sqlx: SQLite embedded by default, PostgreSQL when configured; migrations for both | `db` |
//! | [`RateConfig`], [`RateLimits`], [`Metrics`] | GCRA limits per principal, tenant, refreshing device and failing address; caps on connections and requests in flight per principal and tenant; body and idle deadlines; Prometheus text on the operator's port | `ratelimit`, `admission`, `metrics` |
//! | [`server_config`], [`Pki`], [`Limits`], [`serve`] | the TLS policy, the embedded certificates, the accept loop with its limits | `tls`, `pki`, `listener` |
//! | [`RetentionPolicy`], [`PolicyState`], [`retention_plan`] | retention policies: restic's vocabulary, the defaults, the operator's floor, the delay on shortening; which snapshots a policy keeps | `retention`, `forget` (routes: `routes::retention`) |
//! | [`Archives::prune`], [`prune_user`], [`PruneOptions`], [`PruneReport`] | prune: forget what the policy and holds no longer keep, mark what no kept snapshot reaches, elide it after the grace period by compacting segments | `prune`, `refs` (reference lists), `db::prune` |
//! | [`signing::KeySet`] | the token signing key set in the database, rotated in three steps on every instance | `signing` |
//! | [`SystemClock`], [`SharedClock`] | the injected clock | `clock` |
//! | `testenv` (feature `test-util`) | the test suites' backends, and the part store for crash tests | `testenv` |
//!
//! Decisions: `docs/design/0002-tls-policy.md`, `docs/design/0003-server-storage-and-credentials.md`.
//! Bodies on the wire: `docs/format/wire.md`; the API: `docs/api/openapi.json`. The tests are
//! S-1 to S-12 and S-15 to S-18 of the security-test catalogue, over real TLS on 127.0.0.1.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unnameable_types)]

// Every module is private: what a user of the crate may name is re-exported below, by job, and
// what only tests need sits behind the `test-util` feature in `testenv`.
mod admission;
mod archives;
mod atrest;
mod clock;
mod console;
mod data;
mod db;
mod embedded;
mod events;
mod forget;
mod kek;
mod keystore;
mod listener;
mod metrics;
mod objects;
// `testenv` re-exports the part store for the crash tests, so it is `pub` inside.
#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))]
mod parts;
mod pki;
mod prune;
mod ratelimit;
mod refs;
mod retention;
mod routes;
mod segments;
mod server;
pub mod signing;
#[cfg(feature = "test-util")]
pub mod testenv;
mod tls;

// Setting up and running a server.
pub use data::{AUDIENCE, Backends, DATABASE, DataDir, ISSUER, S3, VERIFIED_TOKEN_CACHE, policy};
pub use embedded::{Embedded, HOST};
pub use server::{MAINTENANCE_EVERY, Server, ServerBuilder};

// Its secrets: the KEK that seals the data directory's secret files, escrow recovery.
pub use kek::{Kek, sealed_by};
pub use keystore::{KeystoreError, recover};

// TLS, the accept loop and its limits, rate limits, metrics, the clock.
pub use clock::{SharedClock, SystemClock};
pub use listener::{Connections, Limits, base_router, harden, serve, serve_counted};
pub use metrics::{DEFAULT_METRICS_ADDR, Metrics, MetricsOptions, serve_metrics};
pub use pki::{CA_CERT, CA_KEY, Loaded, Pki, SERVER_CERT, SERVER_KEY};
pub use ratelimit::{RateConfig, RateLimits};
pub use tls::{ALLOWED_GROUPS, ALLOWED_SUITES, provider, server_config};

// The API: its routes, their state, the services behind them.
pub use console::CONTENT_SECURITY_POLICY;
pub use events::EventsError;
pub use routes::{
    Access, ApiError, AppState, DEVICE_CAPABILITIES, DEVICE_TOKEN_LIFETIME_SECS,
    ENROLLMENT_TOKEN_LIFETIME_SECS, Handler, MAX_EXPORT, REVOCATION_REFRESH, ROUTES,
    RevocationList, Route, Services, prune_user, router, scheduled_prune,
};

// What the services keep: metadata, archives, the storage key ring.
pub use archives::{
    Archives, KIND_BLOCK, KIND_FORGET, KIND_REFS, KIND_SNAPSHOT, LEASE_TTL_MS, RefsRefusal,
    StoreError, Stored, refs_key,
};
pub use atrest::{AtRestError, KeyRing};
pub use db::{
    AuditRow, Damage, Db, DbError, DeviceRow, DeviceState, Engine, HoldRow, IssuedRow, Lifted,
    Quota, SnapshotRow, StoredPolicy, UserRow, UserState,
};
pub use prune::{
    DEFAULT_EVERY_HOURS, DEFAULT_GRACE_SECS, DEFAULT_LIVE_THRESHOLD_PCT, Forgetting, PhaseMillis,
    PruneOptions, PruneReport,
};
pub use refs::MAX_REFS_DEPTH;

// Retention policies, and prune, which applies them.
pub use forget::{Arrival, Verdict, plan as retention_plan};
pub use retention::{MAX_RULE, PolicyState, RetentionPolicy, SHORTENING_DELAY_SECS};

/// The storage API bodies (re-exported from `cairn-wire`).
pub use cairn_wire as wire;

/// What can go wrong setting up or running the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Reading or writing a file, or a socket, failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// rustls refused the configuration (a key that does not match the certificate, say).
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// Generating certificates failed.
    #[error("certificate generation: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A certificate or key file the server must not serve (S-18): unparsable, not valid for
    /// the host name, not issued by the CA, expired or not yet valid.
    #[error("refusing to serve: {file}: {source}")]
    Unservable {
        /// The file (or what was checked: `host name`, `CA`).
        file: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A private file (a key, a secret, the KEK) that its group or others may read or write.
    #[error("refusing to serve: {} has mode {mode:o}; a private key must be 0600", path.display())]
    NotPrivate {
        /// The file.
        path: std::path::PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file of the data directory, or the KEK file, is not what it must be.
    #[error("{}: {what}", path.display())]
    Malformed {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        what: &'static str,
    },
    /// A secret file is sealed by a key-encryption key, and none or another one was given.
    #[error(
        "{} is sealed by KEK {sealed_by}{}",
        path.display(),
        given.as_ref().map_or_else(
            || ": give its KEK file (--kek-file or CAIRN_KEK_FILE)".to_owned(),
            |g| format!(", and the KEK given is {g}")
        )
    )]
    WrongKek {
        /// The sealed file.
        path: std::path::PathBuf,
        /// The id of the KEK that sealed it.
        sealed_by: String,
        /// The id of the KEK given, if any.
        given: Option<String>,
    },
    /// The KEK file lies inside the data directory it is to protect.
    #[error(
        "the KEK file {} is inside the data directory {}: keep it elsewhere, or it protects nothing",
        kek.display(),
        data.display()
    )]
    KekInside {
        /// The KEK file.
        kek: std::path::PathBuf,
        /// The data directory.
        data: std::path::PathBuf,
    },
    /// What was to be made exists already (a data directory, a tenant).
    #[error("{0} exists already")]
    Exists(String),
    /// The configuration asks for what this build does not have.
    #[error("{0}")]
    Unsupported(&'static str),
    /// An id is not valid (see `docs/format/token.md`).
    #[error("{0}")]
    Id(#[from] cairn_token::IdError),
    /// A token key or the token policy was refused.
    #[error("token key: {0}")]
    TokenKey(#[from] cairn_token::KeyError),
    /// The token policy was refused.
    #[error("token policy: {0}")]
    Policy(#[from] cairn_token::PolicyError),
    /// The signing key set could not be read or rotated.
    #[error("signing keys: {0}")]
    Keys(#[from] signing::SigningError),
    /// A token could not be issued.
    #[error("token: {0}")]
    Issue(#[from] cairn_token::IssueError),
    /// The escrow key was refused.
    #[error("escrow key: {0}")]
    Escrow(#[from] cairn_escrow::EscrowError),
    /// The metadata database failed.
    #[error("database: {0}")]
    Db(#[from] crate::db::DbError),
    /// The segment store could not be set up.
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// The archives could not be set up.
    #[error("archives: {0}")]
    Archives(#[from] crate::archives::StoreError),
    /// Sealing a secret file failed.
    #[error("sealing {0} failed")]
    Seal(String),
    /// The server's task ended abnormally.
    #[error("server task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl ServerError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}
