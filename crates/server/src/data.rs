//! The data directory: everything a server instance keeps on its own disk, and how to make and
//! open it.
//!
//! | path | what |
//! | --- | --- |
//! | `pki/` | the embedded CA and server certificate ([`Pki`]) |
//! | `token-signing.key` | the token signing key: Ed25519 seed (hex) and when it was made (Unix seconds), 0600 |
//! | `escrow.key`, `escrow.pub` | the escrow authority's X25519 key pair (hex; the secret 0600) |
//! | `storage-keys` | the storage key ring for events at rest ([`KeyRing`]), 0600 |
//!
//! The three secret files (`token-signing.key`, `escrow.key`, `storage-keys`) are sealed by the
//! key-encryption key when one is configured ([`DataDir::with_kek_file`], [`crate::kek`]): a
//! copy of the directory then holds no usable key. Without one they are plain, and `serve`
//! says so in its log.
//! | `meta.sqlite` | the metadata database ([`Db`]) |
//! | `segments/` | sealed archive segments (the local object store) |
//! | `staging/` | each user's active segment |

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_escrow::{EscrowIdentity, EscrowSecretKey};
use cairn_token::{Clock, Policy, SigningKey, Timestamp, Verifier};

use crate::signing::KeySet;
use object_store::local::LocalFileSystem;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::ServerError;
use crate::archives::Archives;
use crate::atrest::KeyRing;
use crate::db::Db;
use crate::kek::{Kek, sealed_by};
use crate::metrics::Metrics;
use crate::pki::{Pki, check_private, write_new};
use crate::ratelimit::{RateConfig, RateLimits};
use crate::routes::{RevocationList, Services};

/// The token issuer name.
pub const ISSUER: &str = "cairn";
/// The token audience.
pub const AUDIENCE: &str = "cairn-server";

/// The token policy: issuer, audience, the token crate's lifetime ceiling (enrollment tokens
/// use it; device access tokens live an hour) and its default leeway.
///
/// # Errors
/// [`ServerError::TokenKey`] (never, for these constants).
pub fn policy() -> Result<Policy, ServerError> {
    Policy::with_limits(
        ISSUER,
        AUDIENCE,
        cairn_token::MAX_LIFETIME_CEILING_SECS,
        cairn_token::DEFAULT_LEEWAY_SECS,
    )
    .map_err(ServerError::from)
}

const SIGNING_KEY: &str = "token-signing.key";
const ESCROW_KEY: &str = "escrow.key";
const ESCROW_PUB: &str = "escrow.pub";
const STORAGE_KEYS: &str = "storage-keys";
/// The metadata database's file name.
pub const DATABASE: &str = "meta.sqlite";

/// Verified tokens kept by the verifier's cache.
pub const VERIFIED_TOKEN_CACHE: usize = 65_536;

/// Where metadata and segments live when not on the data directory's own disk: what several
/// instances share (`docs/deploy.md`). Every field unset is the embedded default.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct Backends {
    /// The metadata database (`postgres://...`); unset: `meta.sqlite` in the data directory.
    /// The URL may carry a password: `Debug` shows only whether it is set.
    pub database_url: Option<String>,
    /// Archive segments in an S3-compatible store; unset: `segments/` in the data directory.
    pub s3: Option<S3>,
}

/// An S3-compatible bucket for archive segments. Credentials come from the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), never from here.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct S3 {
    /// The bucket.
    pub bucket: String,
    /// The endpoint (`http://127.0.0.1:9000` for a local server); unset: AWS for the region.
    pub endpoint: Option<String>,
    /// The region; unset: `AWS_REGION`, or `us-east-1`.
    pub region: Option<String>,
    /// A key prefix inside the bucket (several deployments in one bucket).
    pub prefix: Option<String>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("database_url", &self.database_url.as_ref().map(|_| "(set)"))
            .field("s3", &self.s3)
            .finish()
    }
}

impl Backends {
    /// From the environment: `CAIRN_DATABASE_URL`, `CAIRN_S3_BUCKET`, `CAIRN_S3_ENDPOINT`,
    /// `CAIRN_S3_REGION`, `CAIRN_S3_PREFIX` (unset or empty: the embedded default).
    #[must_use]
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            database_url: var("CAIRN_DATABASE_URL"),
            s3: var("CAIRN_S3_BUCKET").map(|bucket| S3 {
                bucket,
                endpoint: var("CAIRN_S3_ENDPOINT"),
                region: var("CAIRN_S3_REGION"),
                prefix: var("CAIRN_S3_PREFIX"),
            }),
        }
    }

    /// Metadata in PostgreSQL at `url`.
    #[must_use]
    pub fn with_database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(url.into());
        self
    }

    /// Segments in `bucket` at `endpoint`, under `prefix`.
    #[must_use]
    pub fn with_s3(
        mut self,
        bucket: impl Into<String>,
        endpoint: Option<String>,
        prefix: Option<String>,
    ) -> Self {
        self.s3 = Some(S3 {
            bucket: bucket.into(),
            endpoint,
            region: None,
            prefix,
        });
        self
    }

    /// The S3 store, if configured.
    ///
    /// # Errors
    /// [`ServerError::ObjectStore`] for a configuration the store refuses,
    /// [`ServerError::Unsupported`] in a build without S3.
    pub fn s3_store(&self) -> Result<Option<Arc<dyn object_store::ObjectStore>>, ServerError> {
        let Some(s3) = &self.s3 else {
            return Ok(None);
        };
        Self::s3_build(s3).map(Some)
    }

    #[cfg(not(feature = "s3"))]
    fn s3_build(_: &S3) -> Result<Arc<dyn object_store::ObjectStore>, ServerError> {
        Err(ServerError::Unsupported(
            "S3 is configured, but this server was built without the `s3` feature",
        ))
    }

    #[cfg(feature = "s3")]
    fn s3_build(s3: &S3) -> Result<Arc<dyn object_store::ObjectStore>, ServerError> {
        let mut builder = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&s3.bucket)
            // Create-only puts (If-None-Match) and compare-and-swap (If-Match).
            .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch);
        if let Some(endpoint) = &s3.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                // Local servers (moto, MinIO, s3s) serve buckets as paths, not host names.
                .with_virtual_hosted_style_request(false);
        }
        if let Some(region) = &s3.region {
            builder = builder.with_region(region);
        } else if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            builder = builder.with_region("us-east-1");
        }
        let store: Arc<dyn object_store::ObjectStore> =
            Arc::new(builder.build().map_err(ServerError::from)?);
        Ok(match &s3.prefix {
            Some(prefix) => Arc::new(object_store::prefix::PrefixStore::new(
                store,
                prefix.as_str(),
            )),
            None => store,
        })
    }
}

/// A server's data directory.
#[derive(Clone)]
pub struct DataDir {
    root: PathBuf,
    backends: Backends,
    kek_file: Option<PathBuf>,
    segment_target: Option<u64>,
}

impl std::fmt::Debug for DataDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataDir")
            .field("root", &self.root)
            .field("backends", &self.backends)
            .field("kek_file", &self.kek_file)
            .field("segment_target", &self.segment_target)
            .finish()
    }
}

fn read_hex32(path: &Path) -> Result<(Zeroizing<[u8; 32]>, Option<String>), ServerError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| ServerError::io(format!("reading {}", path.display()), e))?,
    );
    parse_hex32(&text, path)
}

fn parse_hex32(
    text: &str,
    path: &Path,
) -> Result<(Zeroizing<[u8; 32]>, Option<String>), ServerError> {
    let mut lines = text.lines();
    let mut out = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(lines.next().unwrap_or_default().trim(), &mut *out).map_err(|_| {
        ServerError::Malformed {
            path: path.to_path_buf(),
            what: "not 64 hex digits",
        }
    })?;
    Ok((out, lines.next().map(|l| l.trim().to_owned())))
}

impl DataDir {
    /// The data directory at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            backends: Backends::default(),
            kek_file: None,
            segment_target: None,
        }
    }

    /// The same directory with its secret files sealed by the key-encryption key in the file
    /// at `path`, which must be outside the directory ([`Kek`](crate::Kek)). [`DataDir::init`]
    /// makes that file if it does not exist; every other use needs it. A plain secret file
    /// found while a KEK is given is sealed in place.
    #[must_use]
    pub fn with_kek_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.kek_file = Some(path.into());
        self
    }

    /// The KEK file, if one is configured.
    #[must_use]
    pub fn kek_file(&self) -> Option<&Path> {
        self.kek_file.as_deref()
    }

    fn kek(&self) -> Result<Option<Kek>, ServerError> {
        self.kek_file
            .as_deref()
            .map(|p| Kek::load(p, &self.root))
            .transpose()
    }

    /// The contents of the secret file `name`: opened with the KEK if sealed (refused without
    /// it); a plain one is sealed in place when a KEK is configured.
    fn read_secret(&self, name: &str) -> Result<Zeroizing<String>, ServerError> {
        let path = self.root.join(name);
        check_private(&path)?;
        let text = Zeroizing::new(
            std::fs::read_to_string(&path)
                .map_err(|e| ServerError::io(format!("reading {}", path.display()), e))?,
        );
        match (sealed_by(&text), self.kek()?) {
            (Some(id), None) => Err(ServerError::WrongKek {
                path: path.clone(),
                sealed_by: id.to_owned(),
                given: None,
            }),
            (Some(_), Some(kek)) => {
                let plain = kek.open(name, &path, &text)?;
                String::from_utf8(plain.to_vec())
                    .map(Zeroizing::new)
                    .map_err(|_| ServerError::Malformed {
                        path: path.clone(),
                        what: "not text",
                    })
            }
            (None, Some(kek)) => {
                self.replace_file(name, kek.seal(name, text.as_bytes())?.as_bytes())?;
                tracing::info!(file = %path.display(), kek = kek.id(), "secret file sealed by the KEK");
                Ok(text)
            }
            (None, None) => Ok(text),
        }
    }

    /// Writes the secret file `name` (sealed if a KEK is configured): a new file, or an
    /// atomic replacement of the old one.
    fn write_secret(&self, name: &str, plain: &[u8], create_new: bool) -> Result<(), ServerError> {
        let body = match self.kek()? {
            Some(kek) => Zeroizing::new(kek.seal(name, plain)?.into_bytes()),
            None => Zeroizing::new(plain.to_vec()),
        };
        if create_new {
            write_new(&self.root.join(name), &body, true)
        } else {
            self.replace_file(name, &body)
        }
    }

    /// Replaces the private file `name` atomically: a new file beside it, synced, renamed over
    /// it, and the directory synced.
    fn replace_file(&self, name: &str, bytes: &[u8]) -> Result<(), ServerError> {
        let path = self.root.join(name);
        let temp = self.root.join(format!(".{name}.new"));
        match std::fs::remove_file(&temp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ServerError::io(format!("removing {}", temp.display()), e)),
        }
        write_new(&temp, bytes, true)?;
        std::fs::rename(&temp, &path)
            .map_err(|e| ServerError::io(format!("replacing {}", path.display()), e))?;
        std::fs::File::open(&self.root)
            .and_then(|d| d.sync_all())
            .map_err(|e| ServerError::io(format!("syncing {}", self.root.display()), e))
    }

    /// Adds a fresh key to the storage key ring (old keys stay for reading); returns its id.
    /// A running server seals with it after a restart.
    ///
    /// # Errors
    /// [`ServerError`].
    pub fn rotate_storage_key(&self) -> Result<String, ServerError> {
        let mut text = if self.storage_keys().exists() {
            self.read_secret(STORAGE_KEYS)?
        } else {
            Zeroizing::new(String::new())
        };
        let existing = if text.trim().is_empty() {
            0
        } else {
            KeyRing::parse(&text, &self.storage_keys())?.len()
        };
        let line = KeyRing::new_line(existing)?;
        text.push_str(&line);
        self.write_secret(STORAGE_KEYS, text.as_bytes(), !self.storage_keys().exists())?;
        Ok(format!("k{}", existing + 1))
    }

    /// The storage key ring.
    ///
    /// # Errors
    /// [`ServerError`].
    pub fn storage_ring(&self) -> Result<KeyRing, ServerError> {
        KeyRing::parse(&self.read_secret(STORAGE_KEYS)?, &self.storage_keys())
    }

    /// The same directory with metadata and segments in `backends`.
    #[must_use]
    pub fn with_backends(mut self, backends: Backends) -> Self {
        self.backends = backends;
        self
    }

    /// The same directory with archives sealing their segments at about `bytes` (the default
    /// is the archive's, 64 MiB): smaller segments are compacted sooner by prune, at the cost of
    /// more objects.
    #[must_use]
    pub fn with_segment_target(mut self, bytes: u64) -> Self {
        self.segment_target = Some(bytes);
        self
    }

    /// Where metadata and segments live.
    #[must_use]
    pub fn backends(&self) -> &Backends {
        &self.backends
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
        private_dir(&self.root)
            .map_err(|e| ServerError::io(format!("creating {}", self.root.display()), e))?;
        if let Some(path) = self.kek_file.as_deref().filter(|p| !p.exists()) {
            let kek = Kek::generate(path, &self.root)?;
            tracing::info!(file = %path.display(), kek = kek.id(), "KEK made");
        }
        self.pki().init(
            hosts,
            now - time::Duration::hours(1),
            now + time::Duration::days(365),
        )?;
        let key = SigningKey::generate().map_err(ServerError::from)?;
        let text = Zeroizing::new(format!(
            "{}\n{}\n",
            hex::encode(key.expose_seed().as_ref()),
            now.unix_timestamp()
        ));
        self.write_secret(SIGNING_KEY, text.as_bytes(), true)?;
        let escrow = EscrowSecretKey::generate().map_err(ServerError::from)?;
        let text = Zeroizing::new(format!("{}\n", hex::encode(*escrow.expose_secret())));
        self.write_secret(ESCROW_KEY, text.as_bytes(), true)?;
        let public = format!("{}\n", hex::encode(escrow.public().to_bytes()));
        write_new(&self.root.join(ESCROW_PUB), public.as_bytes(), false)?;
        if !self.storage_keys().exists() {
            self.rotate_storage_key()?;
        }
        self.db().await?;
        Ok(())
    }

    /// Whether [`DataDir::init`] has run here (the signing key exists).
    #[must_use]
    pub fn is_initialised(&self) -> bool {
        self.root.join(SIGNING_KEY).exists()
    }

    /// Makes `to` a data directory for another instance of the same deployment: a copy of
    /// this one's certificates and keys (signing, escrow, storage key ring; secrets 0600), and
    /// the same backends. Instances share metadata and segments through the backends, never
    /// through their data directories.
    ///
    /// # Errors
    /// [`ServerError`]; `to` must not hold a data directory already.
    pub fn replicate(&self, to: impl Into<PathBuf>) -> Result<DataDir, ServerError> {
        let mut other = DataDir::at(to).with_backends(self.backends.clone());
        other.kek_file.clone_from(&self.kek_file);
        if other.is_initialised() {
            return Err(ServerError::Exists(format!(
                "the data directory {}",
                other.root.display()
            )));
        }
        let copy = |from: &Path, to: &Path, private: bool| -> Result<(), ServerError> {
            let bytes = Zeroizing::new(
                std::fs::read(from)
                    .map_err(|e| ServerError::io(format!("reading {}", from.display()), e))?,
            );
            write_new(to, &bytes, private)
        };
        let pki_to = other.pki().dir().to_path_buf();
        private_dir(&pki_to)
            .map_err(|e| ServerError::io(format!("creating {}", pki_to.display()), e))?;
        let pki_from = self.pki().dir().to_path_buf();
        let entries = std::fs::read_dir(&pki_from)
            .map_err(|e| ServerError::io(format!("reading {}", pki_from.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ServerError::io("reading the PKI directory", e))?;
            let name = entry.file_name();
            let private = name.to_string_lossy().contains("key");
            copy(&entry.path(), &pki_to.join(&name), private)?;
        }
        for (name, private) in [
            (SIGNING_KEY, true),
            (ESCROW_KEY, true),
            (ESCROW_PUB, false),
            (STORAGE_KEYS, true),
        ] {
            copy(&self.root.join(name), &other.root.join(name), private)?;
        }
        Ok(other)
    }

    /// The token signing key and when it was made.
    ///
    /// # Errors
    /// [`ServerError`].
    pub fn signing_key(&self) -> Result<(SigningKey, Timestamp), ServerError> {
        let path = self.root.join(SIGNING_KEY);
        let (seed, made) = parse_hex32(&self.read_secret(SIGNING_KEY)?, &path)?;
        let made = made
            .and_then(|m| m.parse::<i64>().ok())
            .and_then(|m| Timestamp::from_unix(m).ok())
            .ok_or_else(|| ServerError::Malformed {
                path: path.clone(),
                what: "no creation time",
            })?;
        let key = SigningKey::from_seed(&seed).map_err(ServerError::from)?;
        Ok((key, made))
    }

    /// The escrow authority's identity.
    ///
    /// # Errors
    /// [`ServerError`].
    pub fn escrow_identity(&self) -> Result<EscrowIdentity, ServerError> {
        let path = self.root.join(ESCROW_KEY);
        let (secret, _) = parse_hex32(&self.read_secret(ESCROW_KEY)?, &path)?;
        let key = EscrowSecretKey::from_bytes(&secret).map_err(ServerError::from)?;
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
        if let Some(url) = &self.backends.database_url {
            return Db::open(url).await.map_err(ServerError::from);
        }
        let path = self.root.join(DATABASE);
        if !path.exists() {
            write_new(&path, b"", true)?;
        }
        Db::open_sqlite(&path).await.map_err(ServerError::from)
    }

    /// The token verifier: the signing key's public half, the given clock and revocations.
    ///
    /// # Errors
    /// [`ServerError`].
    pub fn verifier<C: Clock>(
        &self,
        clock: C,
        services: &Services,
    ) -> Result<Verifier<KeySet, C, RevocationList>, ServerError> {
        let (keys, revoked) = (services.issuer.clone(), services.revoked.clone());
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
        self.services_clocked(rates, crate::clock::system()).await
    }

    /// [`DataDir::services_with`] on `clock`: the time tokens are issued at and the database
    /// records.
    ///
    /// # Errors
    /// [`ServerError`].
    pub async fn services_clocked(
        &self,
        rates: RateConfig,
        clock: crate::clock::SharedClock,
    ) -> Result<Arc<Services>, ServerError> {
        let db = self.db().await?.with_clock(Arc::clone(&clock));
        let revoked = RevocationList::load(&db).await.map_err(ServerError::from)?;
        // Revocations and user suspensions made through other instances, or by the server's
        // command line on this host, are reloaded.
        revoked.refresh_every_interval(db.clone());
        let archives = if let Some(store) = self.backends.s3_store()? {
            // Segments in the shared store: archives are leased.
            Archives::shared(db.clone(), store, tokio::runtime::Handle::current())
                .await
                .map_err(ServerError::from)?
        } else {
            let segments = self.root.join("segments");
            for dir in [&self.root, &segments, &self.root.join("staging")] {
                private_dir(dir)
                    .map_err(|e| ServerError::io(format!("creating {}", dir.display()), e))?;
            }
            let store = Arc::new(
                LocalFileSystem::new_with_prefix(&segments)
                    .map_err(ServerError::from)?
                    .with_fsync(true),
            );
            Archives::new_local(
                db.clone(),
                self.root.join("staging"),
                store,
                tokio::runtime::Handle::current(),
            )
        };
        let archives = match self.segment_target {
            Some(bytes) => archives.with_segment_target(bytes),
            None => archives,
        };
        let (key, made) = self.signing_key()?;
        let ring = self.storage_ring()?;
        let issuer = KeySet::open(&db, &ring, &key, made, policy()?).await?;
        drop(key);
        if self.kek_file.is_none() {
            tracing::warn!(
                data = %self.root.display(),
                "no KEK configured: the storage key ring, escrow secret and token signing key \
                 are plain in the data directory, and a copy of it reads every stored event \
                 (give --kek-file or CAIRN_KEK_FILE; docs/threat-model.md)"
            );
        }
        let services = Arc::new(Services {
            db,
            archives,
            ring,
            escrow: self.escrow_identity()?,
            issuer,
            revoked,
            clock,
            metrics: Metrics::default(),
            limits: RateLimits::new(rates),
        });
        // Keys published, switched to or retired through another instance or the command
        // line are followed within the refresh interval.
        KeySet::reload_every_interval(&services);
        Ok(services)
    }
}

/// Creates `dir` (and its missing parents) readable by this user only (0700 on Unix), and
/// makes an existing one so: the server's data is not for other local users (segments are
/// ciphertext, but their names, sizes and times say who backs up how much, and when).
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700).create(dir)?;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    builder.create(dir)
}
