//! The data directory: everything a server instance keeps on its own disk, and how to make and
//! open it.
//!
//! | path | what |
//! | --- | --- |
//! | `pki/` | the embedded CA and server certificate ([`Pki`]) |
//! | `token-signing.key` | the token signing key: Ed25519 seed (hex) and when it was made (Unix seconds), 0600 |
//! | `escrow.key`, `escrow.pub` | the escrow authority's X25519 key pair (hex; the secret 0600) |
//! | `storage-keys` | the storage key ring for events at rest ([`KeyRing`]), 0600 |
//! | `meta.sqlite` | the metadata database ([`Db`]) |
//! | `segments/` | sealed archive segments (the local object store) |
//! | `staging/` | each user's active segment |

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_escrow::{EscrowIdentity, EscrowSecretKey};
use cairn_token::{Clock, KeyEntry, Keyring, Policy, SigningKey, Timestamp, Verifier};
use object_store::local::LocalFileSystem;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::ServerError;
use crate::archives::Archives;
use crate::atrest::KeyRing;
use crate::db::Db;
use crate::pki::{Pki, check_private, write_new};
use crate::ratelimit::{RateConfig, RateLimits};
use crate::routes::{Metrics, RevocationList, Services, SystemClock};

/// The token issuer name.
pub const ISSUER: &str = "cairn";
/// The token audience.
pub const AUDIENCE: &str = "cairn-server";

/// The token policy: issuer, audience, the token crate's lifetime ceiling (enrollment tokens
/// use it; device access tokens live an hour) and its default leeway.
///
/// # Errors
/// [`ServerError::Refused`] (never, for these constants).
pub fn policy() -> Result<Policy, ServerError> {
    Policy::with_limits(
        ISSUER,
        AUDIENCE,
        cairn_token::MAX_LIFETIME_CEILING_SECS,
        cairn_token::DEFAULT_LEEWAY_SECS,
    )
    .map_err(|e| ServerError::Refused(e.to_string()))
}

const SIGNING_KEY: &str = "token-signing.key";
const ESCROW_KEY: &str = "escrow.key";
const ESCROW_PUB: &str = "escrow.pub";
const STORAGE_KEYS: &str = "storage-keys";
/// The metadata database's file name.
pub const DATABASE: &str = "meta.sqlite";

/// Verified tokens kept by the verifier's cache.
pub const VERIFIED_TOKEN_CACHE: usize = 65_536;

/// A server's data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

fn read_hex32(path: &Path) -> Result<(Zeroizing<[u8; 32]>, Option<String>), ServerError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| ServerError::io(format!("reading {}", path.display()), e))?,
    );
    let mut lines = text.lines();
    let mut out = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(lines.next().unwrap_or_default().trim(), &mut *out)
        .map_err(|_| ServerError::Refused(format!("{}: not 64 hex digits", path.display())))?;
    Ok((out, lines.next().map(|l| l.trim().to_owned())))
}

impl DataDir {
    /// The data directory at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Its path.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The PKI.
    #[must_use]
    pub fn pki(&self) -> Pki {
        Pki::at(self.root.join("pki"))
    }

    /// The storage key ring's file.
    #[must_use]
    pub fn storage_keys(&self) -> PathBuf {
        self.root.join(STORAGE_KEYS)
    }

    /// Makes a new data directory: certificates for `hosts` valid from `now` for a year, the
    /// token signing key, the escrow key pair, the first storage key, the database.
    ///
    /// # Errors
    /// [`ServerError`]; an existing key file is never replaced.
    pub async fn init(&self, hosts: &[String], now: OffsetDateTime) -> Result<(), ServerError> {
        std::fs::create_dir_all(&self.root)
            .map_err(|e| ServerError::io(format!("creating {}", self.root.display()), e))?;
        self.pki().init(
            hosts,
            now - time::Duration::hours(1),
            now + time::Duration::days(365),
        )?;
        let key = SigningKey::generate().map_err(|e| ServerError::Refused(e.to_string()))?;
        let text = Zeroizing::new(format!(
            "{}\n{}\n",
            hex::encode(key.expose_seed().as_ref()),
            now.unix_timestamp()
        ));
        write_new(&self.root.join(SIGNING_KEY), text.as_bytes(), true)?;
        let escrow =
            EscrowSecretKey::generate().map_err(|e| ServerError::Refused(e.to_string()))?;
        let text = Zeroizing::new(format!("{}\n", hex::encode(*escrow.expose_secret())));
        write_new(&self.root.join(ESCROW_KEY), text.as_bytes(), true)?;
        let public = format!("{}\n", hex::encode(escrow.public().to_bytes()));
        write_new(&self.root.join(ESCROW_PUB), public.as_bytes(), false)?;
        if !self.storage_keys().exists() {
            KeyRing::rotate(&self.storage_keys())?;
        }
        self.db().await?;
        Ok(())
    }

    /// The token signing key and when it was made.
    ///
    /// # Errors
    /// [`ServerError`].
    pub fn signing_key(&self) -> Result<(SigningKey, Timestamp), ServerError> {
        let path = self.root.join(SIGNING_KEY);
        check_private(&path)?;
        let (seed, made) = read_hex32(&path)?;
        let made = made
            .and_then(|m| m.parse::<i64>().ok())
            .and_then(|m| Timestamp::from_unix(m).ok())
            .ok_or_else(|| ServerError::Refused(format!("{}: no creation time", path.display())))?;
        let key = SigningKey::from_seed(&seed).map_err(|e| ServerError::Refused(e.to_string()))?;
        Ok((key, made))
    }

    /// The escrow authority's identity.
    ///
    /// # Errors
    /// [`ServerError`].
    pub fn escrow_identity(&self) -> Result<EscrowIdentity, ServerError> {
        let path = self.root.join(ESCROW_KEY);
        check_private(&path)?;
        let (secret, _) = read_hex32(&path)?;
        let key = EscrowSecretKey::from_bytes(&secret)
            .map_err(|e| ServerError::Refused(e.to_string()))?;
        Ok(EscrowIdentity(key))
    }

    /// The escrow authority's public key (what agents wrap to), 32 bytes.
    ///
    /// # Errors
    /// [`ServerError`].
    pub fn escrow_public(&self) -> Result<[u8; 32], ServerError> {
        let (bytes, _) = read_hex32(&self.root.join(ESCROW_PUB))?;
        Ok(*bytes)
    }

    /// Opens the metadata database (created 0600: it holds escrowed keys and sealed events).
    ///
    /// # Errors
    /// [`ServerError`].
    pub async fn db(&self) -> Result<Db, ServerError> {
        let path = self.root.join(DATABASE);
        if !path.exists() {
            write_new(&path, b"", true)?;
        }
        Db::open_sqlite(&path)
            .await
            .map_err(|e| ServerError::Refused(e.to_string()))
    }

    /// The token verifier: the signing key's public half, the given clock and revocations.
    ///
    /// # Errors
    /// [`ServerError`].
    pub fn verifier<C: Clock>(
        &self,
        clock: C,
        revoked: RevocationList,
    ) -> Result<Verifier<Keyring, C, RevocationList>, ServerError> {
        let (key, made) = self.signing_key()?;
        let mut keys = Keyring::new();
        keys.insert(KeyEntry {
            key: key.verifying_key().clone(),
            published_at: made,
            signs_from: made,
            retired_at: None,
        })
        .map_err(|e| ServerError::Refused(e.to_string()))?;
        let policy = policy()?;
        // Verified tokens are cached (keyed by a hash of the token; times, key and revocation
        // are checked again on every hit), so an agent's repeated calls skip the signature.
        Ok(Verifier::new(policy, keys, clock, revoked).with_cache(VERIFIED_TOKEN_CACHE))
    }

    /// Opens everything the routes use, with the default rate limits. Call from within a
    /// Tokio runtime.
    ///
    /// # Errors
    /// [`ServerError`].
    pub async fn services(&self) -> Result<Arc<Services>, ServerError> {
        self.services_with(RateConfig::default()).await
    }

    /// [`DataDir::services`] with the given rate limits.
    ///
    /// # Errors
    /// [`ServerError`].
    pub async fn services_with(&self, rates: RateConfig) -> Result<Arc<Services>, ServerError> {
        let db = self.db().await?;
        let revoked = RevocationList::load(&db)
            .await
            .map_err(|e| ServerError::Refused(e.to_string()))?;
        let segments = self.root.join("segments");
        std::fs::create_dir_all(&segments)
            .map_err(|e| ServerError::io(format!("creating {}", segments.display()), e))?;
        let store = Arc::new(
            LocalFileSystem::new_with_prefix(&segments)
                .map_err(|e| ServerError::Refused(e.to_string()))?
                .with_fsync(true),
        );
        let archives = Archives::new_local(
            db.clone(),
            self.root.join("staging"),
            store,
            tokio::runtime::Handle::current(),
        );
        let (key, _) = self.signing_key()?;
        let policy = policy()?;
        Ok(Arc::new(Services {
            db,
            archives,
            ring: KeyRing::load(&self.storage_keys())?,
            escrow: self.escrow_identity()?,
            issuer: cairn_token::Issuer::new(key, policy),
            revoked,
            clock: SystemClock,
            metrics: Metrics::default(),
            limits: RateLimits::new(rates),
        }))
    }
}
