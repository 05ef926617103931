//! The embedded default's certificates: a CA and a server certificate made with rcgen, written
//! with private keys readable only by their owner, and checked before they are served (S-18).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use time::OffsetDateTime;

use crate::ServerError;

/// The CA certificate (PEM): what agents pin.
pub const CA_CERT: &str = "ca.pem";
/// The CA's private key (PEM, mode 0600).
pub const CA_KEY: &str = "ca-key.pem";
/// The server certificate (PEM).
pub const SERVER_CERT: &str = "server.pem";
/// The server's private key (PEM, mode 0600).
pub const SERVER_KEY: &str = "server-key.pem";

/// A directory holding the four PKI files.
#[derive(Clone, Debug)]
pub struct Pki {
    dir: PathBuf,
}

/// What [`Pki::load`] gives the TLS configuration.
pub struct Loaded {
    /// The server certificate chain (server certificate, then the CA).
    pub chain: Vec<CertificateDer<'static>>,
    /// The server's private key.
    pub key: PrivateKeyDer<'static>,
    /// The CA certificate, for clients that pin it.
    pub ca: CertificateDer<'static>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("chain", &self.chain.len())
            .field("key", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// The PKI files in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates a CA and a server certificate for `hosts` (DNS names or IP addresses), valid
    /// from `not_before` to `not_after`; refuses to overwrite any existing file.
    ///
    /// # Errors
    /// [`ServerError::Certificate`] from rcgen; [`ServerError::Io`] if a file exists or cannot
    /// be written.
    pub fn init(
        &self,
        hosts: &[String],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<(), ServerError> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name
            .push(DnType::CommonName, "Cairn embedded CA");
        ca.not_before = not_before;
        ca.not_after = not_after;
        let ca_cert = ca.self_signed(&ca_key)?;

        let server_key = KeyPair::generate()?;
        let mut server = CertificateParams::new(hosts.to_vec())?;
        server
            .distinguished_name
            .push(DnType::CommonName, "Cairn server");
        server.not_before = not_before;
        server.not_after = not_after;
        let issuer = Issuer::new(ca, ca_key);
        let server_cert = server.signed_by(&server_key, &issuer)?;

        crate::data::private_dir(&self.dir)
            .map_err(|e| ServerError::io(format!("creating {}", self.dir.display()), e))?;
        write_new(&self.dir.join(CA_CERT), ca_cert.pem().as_bytes(), false)?;
        write_new(
            &self.dir.join(CA_KEY),
            issuer.key().serialize_pem().as_bytes(),
            true,
        )?;
        write_new(
            &self.dir.join(SERVER_CERT),
            server_cert.pem().as_bytes(),
            false,
        )?;
        write_new(
            &self.dir.join(SERVER_KEY),
            server_key.serialize_pem().as_bytes(),
            true,
        )?;
        Ok(())
    }

    /// Loads the server certificate and key for serving `host`, refusing what should not be
    /// served: a key file others can read, a certificate that does not chain to the CA, is not
    /// valid for `host`, or is expired or not yet valid at `now` (S-18).
    ///
    /// # Errors
    /// [`ServerError::Unservable`] or [`ServerError::NotPrivate`] with the reason;
    /// [`ServerError::Io`] if a file cannot be read.
    pub fn load(&self, host: &str, now: OffsetDateTime) -> Result<Loaded, ServerError> {
        let key_path = self.dir.join(SERVER_KEY);
        check_private(&key_path)?;
        let read = |name: &str| {
            let path = self.dir.join(name);
            fs::read(&path).map_err(|e| ServerError::io(format!("reading {}", path.display()), e))
        };
        fn refused(
            file: &'static str,
        ) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> ServerError {
            move |source| ServerError::Unservable { file, source }
        }
        let ca = CertificateDer::from_pem_slice(&read(CA_CERT)?)
            .map_err(|e| refused(CA_CERT)(e.into()))?;
        let cert = CertificateDer::from_pem_slice(&read(SERVER_CERT)?)
            .map_err(|e| refused(SERVER_CERT)(e.into()))?;
        let key = PrivateKeyDer::from_pem_slice(&read(SERVER_KEY)?)
            .map_err(|e| refused(SERVER_KEY)(e.into()))?;

        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca.clone())
            .map_err(|e| refused(CA_CERT)(e.into()))?;
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(crate::tls::provider()),
        )
        .build()
        .map_err(|e| refused("CA")(e.into()))?;
        let name =
            ServerName::try_from(host.to_owned()).map_err(|e| refused("host name")(e.into()))?;
        let secs = u64::try_from(now.unix_timestamp()).unwrap_or(0);
        verifier
            .verify_server_cert(
                &cert,
                &[],
                &name,
                &[],
                UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs)),
            )
            .map_err(|e| refused(SERVER_CERT)(e.into()))?;
        Ok(Loaded {
            chain: vec![cert, ca.clone()],
            key,
            ca,
        })
    }
}

/// Writes a new file (never replacing one); private files get mode 0600 from creation.
pub(crate) fn write_new(path: &Path, bytes: &[u8], private: bool) -> Result<(), ServerError> {
    use std::io::Write;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = options
        .open(path)
        .map_err(|e| ServerError::io(format!("creating {}", path.display()), e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| ServerError::io(format!("writing {}", path.display()), e))
}

/// Refuses a private key file that its group or others may read or write.
pub(crate) fn check_private(path: &Path) -> Result<(), ServerError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::metadata(path)
            .map_err(|e| ServerError::io(format!("reading {}", path.display()), e))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ServerError::NotPrivate {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
