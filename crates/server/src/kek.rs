//! The key-encryption key (KEK): one 256-bit key kept outside the data directory (a file on
//! another volume, a systemd credential, a secrets manager's mount) that seals the server's
//! secret files inside it: the storage key ring (events at rest), the escrow authority's
//! secret and the token signing key. With a KEK, a copy of the data directory, its database
//! and its segments (a backup of the volume, a stolen disk, the storage or database operator)
//! reads no event content and no key; without one, those files are plain and the server says
//! so at start (`docs/threat-model.md`).
//!
//! The KEK file: 64 hex digits and a newline, mode 0600, never inside the data directory. A
//! sealed secret file (`docs/format/kek.md`):
//!
//! ```text
//! cairn-kek-sealed 1 <kek id: 16 hex> <hex(nonce 12 ‖ AES-256-GCM ciphertext ‖ tag 16)>\n
//! ```
//!
//! with the file's name (`storage-keys`, `escrow.key`, `token-signing.key`) as associated data,
//! so that one sealed file cannot stand in for another. The KEK id is the first 8 bytes of
//! BLAKE3-keyed(KEK, "cairn kek id v1"): it tells a wrong KEK from a damaged file.

use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use crate::ServerError;
use crate::pki::{check_private, write_new};

const MAGIC: &str = "cairn-kek-sealed";
const VERSION: &str = "1";
const NONCE_LEN: usize = 12;

/// The key-encryption key. `Debug` shows its id only.
pub struct Kek {
    cipher: Aes256Gcm,
    id: String,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek").field("id", &self.id).finish()
    }
}

/// Whether `path` is `root` or inside it, after resolving both (symlinks, `..`): the longest
/// existing ancestor is resolved and the rest appended, so a path not made yet is judged by
/// where it would be made.
fn is_within(path: &Path, root: &Path) -> bool {
    let resolve = |p: &Path| -> PathBuf {
        let absolute = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let mut rest = Vec::new();
        let mut at = absolute.as_path();
        loop {
            if let Ok(real) = at.canonicalize() {
                return rest.iter().rev().fold(real, |acc, part| acc.join(part));
            }
            match (at.parent(), at.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_owned());
                    at = parent;
                }
                _ => return absolute,
            }
        }
    };
    resolve(path).starts_with(resolve(root))
}

impl Kek {
    fn from_key(key: &[u8; 32]) -> Result<Self, ServerError> {
        let cipher = Aes256Gcm::new_from_slice(key)
            .map_err(|_| ServerError::Seal("with a KEK that is not a 256-bit key".into()))?;
        let id = blake3::keyed_hash(key, b"cairn kek id v1");
        Ok(Self {
            cipher,
            id: hex::encode(&id.as_bytes()[..8]),
        })
    }

    /// Makes a new KEK file at `path` (0600, its missing parent directories 0700; never replaces
    /// a file), outside `data_root`.
    ///
    /// # Errors
    /// [`ServerError::KekInside`] for a path inside the data directory; [`ServerError::Io`].
    pub fn generate(path: &Path, data_root: &Path) -> Result<Self, ServerError> {
        Self::check_outside(path, data_root)?;
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *key)
            .map_err(|e| ServerError::io("random source", std::io::Error::other(e)))?;
        let text = Zeroizing::new(format!("{}\n", hex::encode(*key)));
        if let Some(dir) = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty() && !d.exists())
        {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder
                .create(dir)
                .map_err(|e| ServerError::io(format!("creating {}", dir.display()), e))?;
        }
        write_new(path, text.as_bytes(), true)?;
        Self::from_key(&key)
    }

    /// Reads the KEK file at `path`: 64 hex digits, mode 0600, outside `data_root`.
    ///
    /// # Errors
    /// [`ServerError::KekInside`], [`ServerError::NotPrivate`], [`ServerError::Malformed`];
    /// [`ServerError::Io`].
    pub fn load(path: &Path, data_root: &Path) -> Result<Self, ServerError> {
        Self::check_outside(path, data_root)?;
        check_private(path)?;
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| ServerError::io(format!("reading KEK file {}", path.display()), e))?,
        );
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), &mut *key).map_err(|_| ServerError::Malformed {
            path: path.to_path_buf(),
            what: "a KEK file must hold 64 hex digits",
        })?;
        Self::from_key(&key)
    }

    fn check_outside(path: &Path, data_root: &Path) -> Result<(), ServerError> {
        if is_within(path, data_root) {
            return Err(ServerError::KekInside {
                kek: path.to_path_buf(),
                data: data_root.to_path_buf(),
            });
        }
        Ok(())
    }

    /// Its id (16 hex digits): names the KEK without revealing it.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `plaintext` sealed as the contents of the secret file `name`.
    ///
    /// # Errors
    /// [`ServerError::Io`] if the random source fails.
    pub(crate) fn seal(&self, name: &str, plaintext: &[u8]) -> Result<String, ServerError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| ServerError::io("random source", std::io::Error::other(e)))?;
        let ct = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| ServerError::Seal(name.to_owned()))?;
        let mut body = nonce.to_vec();
        body.extend_from_slice(&ct);
        Ok(format!(
            "{MAGIC} {VERSION} {} {}\n",
            self.id,
            hex::encode(body)
        ))
    }

    /// Opens the sealed contents `text` of the secret file `name` (at `path`, for messages).
    ///
    /// # Errors
    /// [`ServerError::WrongKek`]: another KEK sealed it; [`ServerError::Malformed`]: it is not
    /// sealed, or damaged or moved.
    pub(crate) fn open(
        &self,
        name: &str,
        path: &Path,
        text: &str,
    ) -> Result<Zeroizing<Vec<u8>>, ServerError> {
        let (id, body) = parse(text).ok_or_else(|| ServerError::Malformed {
            path: path.to_path_buf(),
            what: "not a sealed secret file",
        })?;
        if id != self.id {
            return Err(ServerError::WrongKek {
                path: path.to_path_buf(),
                sealed_by: id.to_owned(),
                given: Some(self.id.clone()),
            });
        }
        let damaged = || ServerError::Malformed {
            path: path.to_path_buf(),
            what: "does not open with its KEK: damaged, or another file put in its place",
        };
        let body = hex::decode(body).map_err(|_| damaged())?;
        let (nonce, ct) = body.split_at_checked(NONCE_LEN).ok_or_else(damaged)?;
        let nonce = Nonce::try_from(nonce).map_err(|_| damaged())?;
        self.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ct,
                    aad: name.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| damaged())
    }
}

/// `(kek id, hex body)` of a sealed file's text, if it is one.
fn parse(text: &str) -> Option<(&str, &str)> {
    let mut parts = text.trim_end_matches('\n').split(' ');
    let (magic, version, id, body) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (magic == MAGIC && version == VERSION && parts.next().is_none()).then_some((id, body))
}

/// Whether `text` is a sealed secret file's, and if so the id of the KEK that sealed it.
#[must_use]
pub fn sealed_by(text: &str) -> Option<&str> {
    text.starts_with(MAGIC)
        .then(|| parse(text).map(|(id, _)| id))
        .flatten()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sealed_files_open_only_under_their_name_and_kek() {
        let outside = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let a = Kek::generate(&outside.path().join("a.kek"), data.path()).unwrap();
        let b = Kek::generate(&outside.path().join("b.kek"), data.path()).unwrap();
        assert_ne!(a.id(), b.id());
        let again = Kek::load(&outside.path().join("a.kek"), data.path()).unwrap();
        assert_eq!(again.id(), a.id());
        let sealed = a.seal("escrow.key", b"secret bytes").unwrap();
        assert_eq!(sealed_by(&sealed), Some(a.id()));
        assert!(!sealed.contains(&hex::encode(b"secret bytes")));
        let path = Path::new("x");
        assert_eq!(
            &**again.open("escrow.key", path, &sealed).unwrap(),
            b"secret bytes"
        );
        let moved = a
            .open("storage-keys", path, &sealed)
            .unwrap_err()
            .to_string();
        assert!(moved.contains("does not open"), "{moved}");
        let wrong = b.open("escrow.key", path, &sealed).unwrap_err().to_string();
        assert!(
            wrong.contains(&format!("sealed by KEK {}", a.id())),
            "{wrong}"
        );
        assert!(!format!("{a:?}").contains(&hex::encode(b"secret")));
        assert_eq!(sealed_by("0123abcd\n"), None);
    }

    #[test]
    fn a_kek_inside_the_data_directory_is_refused() {
        let data = tempfile::tempdir().unwrap();
        std::fs::create_dir(data.path().join("sub")).unwrap();
        for inside in [
            data.path().join("kek"),
            data.path().join("sub/../sub/kek"),
            data.path().join("not/made/yet/kek"),
        ] {
            let e = Kek::generate(&inside, data.path()).unwrap_err().to_string();
            assert!(e.contains("inside the data directory"), "{e}");
        }
        let outside = tempfile::tempdir().unwrap();
        let path = outside.path().join("kek");
        Kek::generate(&path, data.path()).unwrap();
        // Through a symlink from inside the data directory to the file outside: the file is
        // outside, so it is accepted; a symlink from outside into the data directory is not.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(data.path().join("sub"), outside.path().join("in")).unwrap();
            let e = Kek::generate(&outside.path().join("in/kek"), data.path())
                .unwrap_err()
                .to_string();
            assert!(e.contains("inside the data directory"), "{e}");
        }
    }
}
