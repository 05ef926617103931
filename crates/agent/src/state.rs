//! The agent's directory (`docs/format/agent.md`): its configuration, the pinned CA, the archive
//! key and device secret (owner-only files), the chain head, the file cache and the event spool.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use cairn_backup::ChainHead;
use cairn_keys::{ArchiveKey, KEY_LEN};
use cairn_seal::ArchiveId;
use zeroize::Zeroizing;

use crate::AgentError;

/// The configuration file's format version.
pub const CONFIG_FORMAT: u32 = 1;
/// The first bytes of the key file.
pub const KEY_MAGIC: [u8; 8] = *b"CAIRNAK1";
/// The key file's length: magic, archive id, archive key.
pub const KEY_FILE_LEN: usize = 8 + 16 + KEY_LEN;

/// File names inside the agent directory.
pub mod names {
    /// The configuration (JSON).
    pub const CONFIG: &str = "agent.json";
    /// The pinned CA (PEM).
    pub const CA: &str = "ca.pem";
    /// The archive id and key (owner-only).
    pub const KEY: &str = "archive.key";
    /// The device secret (owner-only).
    pub const SECRET: &str = "device.secret";
    /// The chain head (`SEQ ID`).
    pub const HEAD: &str = "head";
    /// The backup engine's file cache (redb).
    pub const FILES: &str = "files.redb";
    /// The event spool (redb).
    pub const SPOOL: &str = "spool.redb";
    /// The archive key wrapped for the security mode (`cairn-escrow` envelope).
    pub const ENVELOPE: &str = "key.envelope";
    /// Written when the device was deauthorized, in place of everything else.
    pub const DEAUTHORIZED: &str = "DEAUTHORIZED";
}

/// The agent's configuration (`agent.json`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// [`CONFIG_FORMAT`].
    pub format: u32,
    /// The server, `https://host:port`.
    pub server: String,
    /// The tenant.
    pub tenant: String,
    /// The user the device backs up for.
    pub user: String,
    /// The device id (32 hex digits).
    pub device: String,
    /// The host name recorded in snapshots.
    pub host: String,
    /// The escrow mode chosen at enrollment (`standard` or `custom-key`).
    pub mode: String,
    /// Whether the server accepted the escrow envelope (`key.envelope`).
    pub escrowed: bool,
    /// The folder this agent backs up, when it backs up one (set by the first backup).
    pub folder: Option<PathBuf>,
    /// The folders this agent backs up, when it backs up several (set by the first backup;
    /// `folder` is then unset). See [`Config::folders`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub folders: Vec<PathBuf>,
    /// Exposure rules for events (defaults written at enrollment; edit to taste).
    #[serde(default)]
    pub exposure: Vec<crate::events::ExposureRule>,
}

impl Config {
    /// The folders this agent backs up (empty before the first backup).
    #[must_use]
    pub fn folders(&self) -> Vec<PathBuf> {
        if self.folders.is_empty() {
            self.folder.iter().cloned().collect()
        } else {
            self.folders.clone()
        }
    }

    /// Records the folders backed up.
    pub fn set_folders(&mut self, folders: &[PathBuf]) {
        if let [one] = folders {
            self.folder = Some(one.clone());
            self.folders = Vec::new();
        } else {
            self.folder = None;
            self.folders = folders.to_vec();
        }
    }
}

/// The agent's directory.
#[derive(Clone, Debug)]
pub struct AgentDir {
    root: PathBuf,
}

#[cfg(unix)]
fn owner_only(options: &mut OpenOptions) -> &mut OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    options.mode(0o600)
}

#[cfg(not(unix))]
fn owner_only(options: &mut OpenOptions) -> &mut OpenOptions {
    options
}

/// Refuses a secret file that others can read or write.
#[cfg(unix)]
fn check_private(path: &Path, file: &File) -> Result<(), AgentError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file
        .metadata()
        .map_err(|e| AgentError::io(path, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(AgentError::State(format!(
            "{} is accessible to other users (mode {:o}); it must be 0600",
            path.display(),
            mode & 0o777
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path, _: &File) -> Result<(), AgentError> {
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), AgentError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AgentError::io(dir, e))?;
    let _ = dir;
    Ok(())
}

/// Overwrites a file's bytes with zeros, syncs, and removes it (a missing file is fine).
fn shred(path: &Path) -> Result<(), AgentError> {
    match OpenOptions::new().write(true).open(path) {
        Ok(mut f) => {
            let len = f.metadata().map_err(|e| AgentError::io(path, e))?.len();
            let zeros = vec![0u8; usize::try_from(len).unwrap_or(0).min(1 << 20)];
            f.write_all(&zeros)
                .and_then(|()| f.sync_all())
                .map_err(|e| AgentError::io(path, e))?;
            fs::remove_file(path).map_err(|e| AgentError::io(path, e))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AgentError::io(path, e)),
    }
}

impl AgentDir {
    /// The agent directory at `root` (nothing is read yet).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Its path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file of the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Whether the device was deauthorized (its state is gone).
    pub fn is_deauthorized(&self) -> bool {
        self.path(names::DEAUTHORIZED).exists()
    }

    /// Creates the directory (owner-only) and writes a new agent's files: configuration, pinned
    /// CA, key file and device secret. Refuses a directory that holds an agent already.
    ///
    /// # Errors
    /// [`AgentError::Usage`] if an agent lives there; [`AgentError::Io`].
    pub fn create(
        &self,
        config: &Config,
        ca_pem: &[u8],
        key: &ArchiveKey,
        archive: &ArchiveId,
        secret: &[u8; 32],
    ) -> Result<(), AgentError> {
        if self.path(names::CONFIG).exists() || self.path(names::KEY).exists() {
            return Err(AgentError::Usage(format!(
                "{} already holds an enrolled agent",
                self.root.display()
            )));
        }
        fs::create_dir_all(&self.root).map_err(|e| AgentError::io(&self.root, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
                .map_err(|e| AgentError::io(&self.root, e))?;
        }
        let mut key_bytes = Zeroizing::new(Vec::with_capacity(KEY_FILE_LEN));
        key_bytes.extend_from_slice(&KEY_MAGIC);
        key_bytes.extend_from_slice(archive.as_bytes());
        key_bytes.extend_from_slice(key.expose_secret());
        self.write_new(names::KEY, &key_bytes, true)?;
        self.write_new(names::SECRET, secret, true)?;
        self.write_new(names::CA, ca_pem, false)?;
        self.save_config(config)?;
        sync_dir(&self.root)
    }

    fn write_new(&self, name: &str, bytes: &[u8], private: bool) -> Result<(), AgentError> {
        let path = self.path(name);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        if private {
            owner_only(&mut options);
        }
        let mut f = options.open(&path).map_err(|e| AgentError::io(&path, e))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| AgentError::io(&path, e))
    }

    /// Replaces a file atomically: a temporary file, synced, renamed over it, directory synced.
    fn replace(&self, name: &str, bytes: &[u8]) -> Result<(), AgentError> {
        let tmp = self.path(&format!("{name}.tmp"));
        let path = self.path(name);
        let mut f = File::create(&tmp).map_err(|e| AgentError::io(&tmp, e))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| AgentError::io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| AgentError::io(&path, e))?;
        sync_dir(&self.root)
    }

    fn refuse_deauthorized(&self) -> Result<(), AgentError> {
        if self.is_deauthorized() {
            return Err(AgentError::Deauthorized);
        }
        Ok(())
    }

    /// The configuration.
    ///
    /// # Errors
    /// [`AgentError::Deauthorized`], [`AgentError::State`] for a missing or unknown format.
    pub fn config(&self) -> Result<Config, AgentError> {
        self.refuse_deauthorized()?;
        let path = self.path(names::CONFIG);
        let bytes = fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                AgentError::State(format!(
                    "{} is not an enrolled agent (run `agent enroll` first)",
                    self.root.display()
                ))
            } else {
                AgentError::io(&path, e)
            }
        })?;
        let config: Config = serde_json::from_slice(&bytes)
            .map_err(|e| AgentError::State(format!("{}: {e}", path.display())))?;
        if config.format != CONFIG_FORMAT {
            return Err(AgentError::State(format!(
                "{}: format {} (this agent reads {CONFIG_FORMAT})",
                path.display(),
                config.format
            )));
        }
        Ok(config)
    }

    /// Writes the configuration.
    ///
    /// # Errors
    /// [`AgentError::Io`].
    pub fn save_config(&self, config: &Config) -> Result<(), AgentError> {
        let mut json = serde_json::to_vec_pretty(config)
            .map_err(|e| AgentError::State(format!("configuration: {e}")))?;
        json.push(b'\n');
        self.replace(names::CONFIG, &json)
    }

    /// The pinned CA (PEM).
    ///
    /// # Errors
    /// [`AgentError::Io`].
    pub fn ca(&self) -> Result<Vec<u8>, AgentError> {
        let path = self.path(names::CA);
        fs::read(&path).map_err(|e| AgentError::io(&path, e))
    }

    fn read_private(&self, name: &str, len: usize) -> Result<Zeroizing<Vec<u8>>, AgentError> {
        self.refuse_deauthorized()?;
        let path = self.path(name);
        let mut f = File::open(&path).map_err(|e| AgentError::io(&path, e))?;
        check_private(&path, &f)?;
        let mut bytes = Zeroizing::new(Vec::with_capacity(len + 1));
        std::io::Read::read_to_end(&mut std::io::Read::take(&mut f, len as u64 + 1), &mut bytes)
            .map_err(|e| AgentError::io(&path, e))?;
        if bytes.len() != len {
            return Err(AgentError::State(format!(
                "{}: {} bytes, expected {len}",
                path.display(),
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    /// The archive key and id.
    ///
    /// # Errors
    /// [`AgentError::State`] for a key file of the wrong size or magic, or readable by others.
    pub fn key(&self) -> Result<(ArchiveKey, ArchiveId), AgentError> {
        let bytes = self.read_private(names::KEY, KEY_FILE_LEN)?;
        let (magic, rest) = bytes.split_at(8);
        if magic != KEY_MAGIC {
            return Err(AgentError::State(format!(
                "{}: not a Cairn key file",
                self.path(names::KEY).display()
            )));
        }
        let (archive, key) = rest.split_at(16);
        let mut id = [0u8; 16];
        id.copy_from_slice(archive);
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        k.copy_from_slice(key);
        Ok((ArchiveKey::from_bytes(*k), ArchiveId::from_bytes(id)))
    }

    /// The device secret.
    ///
    /// # Errors
    /// As [`AgentDir::key`].
    pub fn secret(&self) -> Result<Zeroizing<[u8; 32]>, AgentError> {
        let bytes = self.read_private(names::SECRET, 32)?;
        let mut s = Zeroizing::new([0u8; 32]);
        s.copy_from_slice(&bytes);
        Ok(s)
    }

    /// Writes the escrow envelope (owner-only: in the custom-key mode it is the password's
    /// only copy of the key besides the key file).
    ///
    /// # Errors
    /// [`AgentError::Io`].
    pub fn write_envelope(&self, bytes: &[u8]) -> Result<(), AgentError> {
        self.write_new(names::ENVELOPE, bytes, true)
    }

    /// The escrow envelope.
    ///
    /// # Errors
    /// [`AgentError::Io`].
    pub fn envelope(&self) -> Result<Vec<u8>, AgentError> {
        let path = self.path(names::ENVELOPE);
        fs::read(&path).map_err(|e| AgentError::io(&path, e))
    }

    /// The chain head, if a backup was made.
    ///
    /// # Errors
    /// [`AgentError::State`] for a malformed head file.
    pub fn head(&self) -> Result<Option<ChainHead>, AgentError> {
        let path = self.path(names::HEAD);
        match fs::read_to_string(&path) {
            Ok(s) => s
                .parse()
                .map(Some)
                .map_err(|e| AgentError::State(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(AgentError::io(&path, e)),
        }
    }

    /// Records the chain head (after the snapshot is on the server).
    ///
    /// # Errors
    /// [`AgentError::Io`].
    pub fn set_head(&self, head: &ChainHead) -> Result<(), AgentError> {
        self.replace(names::HEAD, format!("{head}\n").as_bytes())
    }

    /// Deauthorization: zeroes and removes the key file and the device secret, removes every
    /// other file, and leaves a note saying why.
    ///
    /// # Errors
    /// [`AgentError::Io`] if a file cannot be removed (the caller reports it; the key is gone
    /// first).
    pub fn wipe(&self, when_unix: u64) -> Result<(), AgentError> {
        shred(&self.path(names::KEY))?;
        shred(&self.path(names::SECRET))?;
        for name in [
            names::HEAD,
            names::FILES,
            names::SPOOL,
            names::ENVELOPE,
            names::CONFIG,
            names::CA,
        ] {
            match fs::remove_file(self.path(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(AgentError::io(self.path(name), e)),
            }
        }
        self.replace(
            names::DEAUTHORIZED,
            format!(
                "this device was deauthorized by its administrator (unix time {when_unix}); \
                 its archive key, secret and state were removed\n"
            )
            .as_bytes(),
        )
    }
}
