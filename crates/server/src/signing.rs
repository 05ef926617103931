//! Token signing keys and their rotation (`docs/design/0009-retention-and-prune.md` §9,
//! SECURITY-TESTS T-4), across every instance and without a restart.
//!
//! The key set is in the metadata database (migration 0012 `signing_keys`): each key's public
//! half, its seed sealed by the storage key ring (which every instance of a deployment holds),
//! and its times. Every instance reloads it every [`REVOCATION_REFRESH`](crate::REVOCATION_REFRESH)
//! into a [`KeySet`], which its verifier resolves key ids through and its issuer signs with.
//! The operator rotates from the command line in three steps:
//!
//! 1. **publish** ([`publish`]): a new key joins the set; verifiers accept its tokens once they
//!    reloaded it (within the refresh interval);
//! 2. **switch** ([`switch`]), at least [`PROPAGATION_SECS`] after publishing: the new key signs
//!    from now on and the old one stops (its `retired_at`), so it can no longer mint a token,
//!    even if it leaks; tokens it signed stay valid until they expire;
//! 3. **retire** ([`retire`]): the old key leaves the set, refused before its `retired_at` plus
//!    the longest token lifetime plus the leeway (when the last token it signed has expired).
//!
//! The data directory's signing key file is the first key: a set with no row for it gets one.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use cairn_token::{
    BearerToken, IssueError, Issuer, KeyEntry, KeyId, KeyResolver, Keyring, Policy, SigningKey,
    Timestamp, TokenId, TokenRequest, VerifyingKey,
};

use crate::atrest::KeyRing;
use crate::db::{Db, DbError, col};

/// The least time between publishing a key and switching to it: long enough for every
/// instance to have reloaded the set (five refresh intervals).
pub const PROPAGATION_SECS: i64 = 10;

/// Why a rotation step was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigningError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// No key with this id is in the set.
    #[error("no signing key {0}")]
    Unknown(String),
    /// The step is refused now: the reason says when it will not be.
    #[error("{0}")]
    TooEarly(String),
    /// The step does not apply to this key (switching to a key already signing, retiring the
    /// key that signs).
    #[error("{0}")]
    State(String),
    /// A sealed seed did not open, or a stored key does not parse.
    #[error("stored signing key {0} is damaged or sealed by an unknown storage key")]
    Damaged(String),
    /// The random source or the key failed.
    #[error("making a key failed: {0}")]
    Key(String),
}

/// One key of the set, as stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeyRow {
    /// Its id (the token footer's `kid`).
    pub id: String,
    /// Published (Unix seconds): verifiers accept it.
    pub published_unix: i64,
    /// Signs from (Unix seconds); `None` until switched to.
    pub signs_from_unix: Option<i64>,
    /// Stopped signing (Unix seconds).
    pub retired_unix: Option<i64>,
    /// Left the set (Unix seconds): verifies nothing, its seed erased.
    pub removed_unix: Option<i64>,
}

fn context(id: &str) -> Vec<u8> {
    format!("cairn signing key v1 {id}").into_bytes()
}

fn ts(unix: i64) -> Timestamp {
    Timestamp::from_unix(unix).unwrap_or(Timestamp::MAX)
}

struct Loaded {
    ring: Keyring,
    signers: HashMap<KeyId, Issuer>,
}

/// The keys an instance verifies with and signs with, reloaded from the database; cheap to
/// clone (one shared set).
#[derive(Clone)]
pub struct KeySet {
    loaded: Arc<RwLock<Loaded>>,
    policy: Policy,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.loaded.read().map_or(0, |l| l.ring.len());
        f.debug_struct("KeySet")
            .field("keys", &n)
            .finish_non_exhaustive()
    }
}

impl KeyResolver for KeySet {
    fn resolve(&self, id: &KeyId) -> Option<KeyEntry> {
        self.loaded.read().ok()?.ring.resolve(id)
    }
}

async fn rows(db: &Db) -> Result<Vec<(KeyRow, String, String, String)>, DbError> {
    let rows = sqlx::query(
        "SELECT id, public_hex, sealed_by, seed_sealed, published_unix, signs_from_unix,
                retired_unix, removed_unix FROM signing_keys ORDER BY published_unix, id",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                KeyRow {
                    id: col(r, 0)?,
                    published_unix: col(r, 4)?,
                    signs_from_unix: col(r, 5)?,
                    retired_unix: col(r, 6)?,
                    removed_unix: col(r, 7)?,
                },
                col(r, 1)?,
                col(r, 2)?,
                col(r, 3)?,
            ))
        })
        .collect()
}

async fn insert(
    db: &Db,
    ring: &KeyRing,
    key: &SigningKey,
    published: i64,
    signs_from: Option<i64>,
) -> Result<String, SigningError> {
    let id = key.verifying_key().id().as_str().to_owned();
    let (sealed_by, sealed) = ring
        .seal(&context(&id), key.expose_seed().as_slice())
        .map_err(|e| SigningError::Key(e.to_string()))?;
    sqlx::query(
        "INSERT INTO signing_keys (id, public_hex, sealed_by, seed_sealed, published_unix,
                                   signs_from_unix, retired_unix)
         VALUES ($1, $2, $3, $4, $5, $6, NULL) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&id)
    .bind(hex::encode(key.verifying_key().to_bytes()))
    .bind(sealed_by)
    .bind(hex::encode(sealed))
    .bind(published)
    .bind(signs_from)
    .execute(db.pool())
    .await
    .map_err(DbError::from)?;
    Ok(id)
}

impl KeySet {
    /// The set in the database, with the data directory's key (`file_key`, made at `made`) in
    /// it: added as a signing key if the set has no row for it.
    ///
    /// # Errors
    /// [`SigningError`].
    pub async fn open(
        db: &Db,
        ring: &KeyRing,
        file_key: &SigningKey,
        made: Timestamp,
        policy: Policy,
    ) -> Result<Self, SigningError> {
        let made = made.unix();
        insert(db, ring, file_key, made, Some(made)).await?;
        let set = Self {
            loaded: Arc::new(RwLock::new(Loaded {
                ring: Keyring::new(),
                signers: HashMap::new(),
            })),
            policy,
        };
        set.reload(db, ring).await?;
        Ok(set)
    }

    /// Reads the set again (what every instance does every `REVOCATION_REFRESH`).
    ///
    /// # Errors
    /// [`SigningError`]: the set in use stays as it was.
    pub async fn reload(&self, db: &Db, ring: &KeyRing) -> Result<(), SigningError> {
        let mut keys = Keyring::new();
        let mut signers = HashMap::new();
        for (row, public, sealed_by, sealed) in rows(db).await? {
            if row.removed_unix.is_some() {
                continue;
            }
            let damaged = || SigningError::Damaged(row.id.clone());
            let public: [u8; 32] = hex::decode(&public)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(damaged)?;
            let key = VerifyingKey::from_bytes(&public).map_err(|_| damaged())?;
            if key.id().as_str() != row.id {
                return Err(damaged());
            }
            let published = ts(row.published_unix);
            // A key not yet switched to verifies from its publication and signs never (until
            // a reload after the switch).
            let retired = row.retired_unix.map(ts);
            let signs_from = row
                .signs_from_unix
                .map_or(Timestamp::MAX, ts)
                .max(published)
                .min(retired.unwrap_or(Timestamp::MAX));
            keys.insert(KeyEntry {
                key: key.clone(),
                published_at: published,
                signs_from,
                retired_at: retired,
            })
            .map_err(|_| damaged())?;
            if row.signs_from_unix.is_some() && row.retired_unix.is_none() {
                let sealed = hex::decode(&sealed).map_err(|_| damaged())?;
                let seed = zeroize::Zeroizing::new(
                    ring.open(&sealed_by, &context(&row.id), &sealed)
                        .map_err(|_| damaged())?,
                );
                let seed: &[u8; 32] = seed.as_slice().try_into().map_err(|_| damaged())?;
                let signing = SigningKey::from_seed(seed).map_err(|_| damaged())?;
                if signing.verifying_key().id() != key.id() {
                    return Err(damaged());
                }
                signers.insert(key.id().clone(), Issuer::new(signing, self.policy.clone()));
            }
        }
        let mut loaded = self
            .loaded
            .write()
            .map_err(|_| SigningError::Key("key set lock poisoned".into()))?;
        *loaded = Loaded {
            ring: keys,
            signers,
        };
        Ok(())
    }

    /// Reloads `services`' set every [`REVOCATION_REFRESH`](crate::REVOCATION_REFRESH) while
    /// they live.
    pub(crate) fn reload_every_interval(services: &Arc<crate::Services>) {
        let weak = Arc::downgrade(services);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::REVOCATION_REFRESH);
            loop {
                tick.tick().await;
                let Some(services) = weak.upgrade() else {
                    return;
                };
                if let Err(e) = services.issuer.reload(&services.db, &services.ring).await {
                    tracing::warn!(error = %e, "reloading the signing keys failed");
                }
            }
        });
    }

    /// Issues a token with the key that signs at `now` ([`IssueError::Signing`] if none does:
    /// every key retired).
    ///
    /// # Errors
    /// [`IssueError`].
    pub fn issue(&self, request: &TokenRequest, now: Timestamp) -> Result<BearerToken, IssueError> {
        let id = TokenId::random().map_err(|_| IssueError::Random)?;
        self.issue_with_id(request, now, id)
    }

    /// [`KeySet::issue`] with the token id given.
    ///
    /// # Errors
    /// [`IssueError`].
    pub fn issue_with_id(
        &self,
        request: &TokenRequest,
        now: Timestamp,
        id: TokenId,
    ) -> Result<BearerToken, IssueError> {
        let loaded = self.loaded.read().map_err(|_| IssueError::Signing)?;
        let signer = loaded
            .ring
            .signer_at(now)
            .and_then(|k| loaded.signers.get(k))
            .ok_or_else(|| {
                tracing::error!("no signing key signs now: every key is retired");
                IssueError::Signing
            })?;
        signer.issue_with_id(request, now, id)
    }

    /// The id of the key that signs at `now`.
    #[must_use]
    pub fn signer_at(&self, now: Timestamp) -> Option<String> {
        let loaded = self.loaded.read().ok()?;
        loaded
            .ring
            .signer_at(now)
            .filter(|k| loaded.signers.contains_key(*k))
            .map(|k| k.as_str().to_owned())
    }
}

/// The set as stored, oldest first.
///
/// # Errors
/// [`DbError`].
pub async fn list(db: &Db) -> Result<Vec<KeyRow>, DbError> {
    Ok(rows(db).await?.into_iter().map(|(r, ..)| r).collect())
}

/// Step 1: a new key joins the set at `now`. Returns its id.
///
/// # Errors
/// [`SigningError`].
pub async fn publish(db: &Db, ring: &KeyRing, now: i64) -> Result<String, SigningError> {
    let key = SigningKey::generate().map_err(|e| SigningError::Key(e.to_string()))?;
    insert(db, ring, &key, now, None).await
}

/// Step 2: key `id` signs from `now`, and every key signing until now stops (their
/// `retired_unix`). Refused until [`PROPAGATION_SECS`] after it was published.
///
/// # Errors
/// [`SigningError`].
pub async fn switch(db: &Db, id: &str, now: i64) -> Result<(), SigningError> {
    let all = list(db).await?;
    let row = all
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| SigningError::Unknown(id.to_owned()))?;
    if row.signs_from_unix.is_some() {
        return Err(SigningError::State(format!(
            "key {id} was switched to already"
        )));
    }
    let ready = row.published_unix.saturating_add(PROPAGATION_SECS);
    if now < ready {
        return Err(SigningError::TooEarly(format!(
            "key {id} was published {}s ago: every instance must have it before it signs; switch at {ready} or later",
            now - row.published_unix
        )));
    }
    let mut tx = db.pool().begin().await.map_err(DbError::from)?;
    sqlx::query(
        "UPDATE signing_keys SET retired_unix = $1
          WHERE signs_from_unix IS NOT NULL AND retired_unix IS NULL",
    )
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(DbError::from)?;
    sqlx::query("UPDATE signing_keys SET signs_from_unix = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
}

/// Step 3: key `id`, which stopped signing, leaves the set. Refused until its last token has
/// expired: `retired_unix + max_lifetime + leeway` of `policy`.
///
/// # Errors
/// [`SigningError`].
pub async fn retire(db: &Db, id: &str, now: i64, policy: &Policy) -> Result<(), SigningError> {
    let all = list(db).await?;
    let row = all
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| SigningError::Unknown(id.to_owned()))?;
    if row.removed_unix.is_some() {
        return Err(SigningError::State(format!("key {id} was retired already")));
    }
    let Some(stopped) = row.retired_unix else {
        return Err(SigningError::State(format!(
            "key {id} still signs (or was never switched to and never signed: switch to another key first, or it would verify nothing anyway)"
        )));
    };
    let until = stopped
        .saturating_add(policy.max_lifetime())
        .saturating_add(policy.leeway());
    if now <= until {
        return Err(SigningError::TooEarly(format!(
            "tokens key {id} signed stay valid until {until} (it stopped signing at {stopped}, plus the longest lifetime and the leeway)"
        )));
    }
    sqlx::query("UPDATE signing_keys SET removed_unix = $1, seed_sealed = '' WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(db.pool())
        .await
        .map_err(DbError::from)?;
    Ok(())
}
