//! Where a user's archive segments live on the server: the active segment in a local staging
//! directory (appends, fsync, truncation: what an object store cannot do), sealed segments in an
//! [`ObjectStore`] (local disk with fsync by default; S3 when configured).
//!
//! [`ObjectSegments`] implements `cairn-archive`'s [`Storage`] contract:
//! - the active segment follows [`DirStorage`]'s durability protocol;
//! - [`Storage::seal`] publishes the finished segment with a create-only put (an existing object
//!   of that name is an error unless it holds exactly these bytes, which is what a crash between
//!   the put and the removal of the staged copy leaves), then removes the staged copy;
//! - a name found both staged and published (that same crash) is read from the store, and the
//!   staged copy is removed when the archive opens.
//!
//! When the store is the data directory's own local file system ([`ObjectSegments::with_local`]),
//! sealing publishes the staged file by hard link instead of copying it: the same create-only
//! rule (a link cannot replace an existing name), the bytes written once instead of twice. A
//! store on another file system falls back to the copy.
//!
//! The trait is synchronous; calls into the store block the calling thread on the runtime's
//! handle, so archives must be used from blocking threads (`spawn_blocking`), never from a
//! runtime worker.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use cairn_archive::{DirStorage, FileWriter, Storage};
use futures_util::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::runtime::Handle;

use crate::objects::{store_error, superseded};

/// A user's segments: staged locally while active, published to an object store when sealed.
#[derive(Clone, Debug)]
pub(crate) struct ObjectSegments {
    staging: DirStorage,
    store: Arc<dyn ObjectStore>,
    /// The same store, when it is a local file system: sealing links instead of copying.
    local: Option<Arc<LocalFileSystem>>,
    prefix: ObjectPath,
    runtime: Handle,
}

/// Makes a directory's entries durable.
fn sync_dir(dir: &std::path::Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl ObjectSegments {
    /// Segments staged under `staging` and published under `prefix` in `store`. Removes staged
    /// copies of segments already published (see the module docs).
    ///
    /// # Errors
    /// Creating the staging directory or listing the store failed.
    pub(crate) fn open(
        staging: &std::path::Path,
        store: Arc<dyn ObjectStore>,
        prefix: ObjectPath,
        runtime: Handle,
    ) -> io::Result<Self> {
        let this = Self {
            staging: DirStorage::open(staging)?,
            store,
            local: None,
            prefix,
            runtime,
        };
        let published = this.published()?;
        for name in this.staging.list()? {
            if superseded(&name, &published) {
                this.staging.remove(&name)?;
            }
        }
        Ok(this)
    }

    /// Declares that the store is `local` (the very store given to [`ObjectSegments::open`]),
    /// so that sealing publishes by hard link.
    #[must_use]
    pub(crate) fn with_local(mut self, local: Arc<LocalFileSystem>) -> Self {
        self.local = Some(local);
        self
    }

    /// Publishes the staged `from` as the object `to` by hard link. `Ok(false)`: the store is
    /// on another file system, copy instead.
    fn link(&self, local: &LocalFileSystem, from: &str, to: &str) -> io::Result<bool> {
        let src = self.staging.file_path(from)?;
        let dst = local
            .path_to_filesystem(&self.object(to))
            .map_err(store_error)?;
        let parent = dst
            .parent()
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        if !parent.exists() {
            crate::data::private_dir(parent)?;
            // The new directories' own entries, up to the store's root.
            let root = local.path_to_filesystem(&ObjectPath::default()).ok();
            for dir in parent.ancestors().skip(1) {
                sync_dir(dir)?;
                if root
                    .as_deref()
                    .is_none_or(|r| dir == r || !dir.starts_with(r))
                {
                    break;
                }
            }
        }
        match std::fs::hard_link(&src, &dst) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // A crash after an earlier link (or put): it must hold exactly these bytes.
                if std::fs::read(&dst)? != std::fs::read(&src)? {
                    return Err(io::Error::from(io::ErrorKind::AlreadyExists));
                }
            }
            Err(e) => return Err(e),
        }
        sync_dir(parent)?;
        Ok(true)
    }

    fn object(&self, name: &str) -> ObjectPath {
        self.prefix.clone().join(name)
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    fn published(&self) -> io::Result<Vec<String>> {
        let metas: Vec<object_store::ObjectMeta> = self
            .block_on(self.store.list(Some(&self.prefix)).try_collect())
            .map_err(store_error)?;
        Ok(metas
            .into_iter()
            .filter_map(|m| m.location.filename().map(str::to_owned))
            .collect())
    }

    fn staged(&self, name: &str) -> io::Result<bool> {
        match self.staging.len(name) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Storage for ObjectSegments {
    type Writer = FileWriter;

    fn create(&self, name: &str) -> io::Result<FileWriter> {
        self.staging.create(name)
    }

    fn append(&self, name: &str) -> io::Result<FileWriter> {
        self.staging.append(name)
    }

    fn len(&self, name: &str) -> io::Result<u64> {
        if self.staged(name)? {
            return self.staging.len(name);
        }
        let meta = self
            .block_on(self.store.head(&self.object(name)))
            .map_err(store_error)?;
        Ok(meta.size)
    }

    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if self.staged(name)? {
            return self.staging.read_at(name, offset, buf);
        }
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let bytes = self
            .block_on(self.store.get_range(&self.object(name), offset..end))
            .map_err(store_error)?;
        if bytes.len() != buf.len() {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        buf.copy_from_slice(&bytes);
        Ok(())
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        // Only the active (staged) segment is ever cut; published segments are immutable.
        self.staging.truncate(name, len)
    }

    fn seal(&self, from: &str, to: &str) -> io::Result<()> {
        if let Some(local) = &self.local
            && self.link(local, from, to)?
        {
            return self.staging.remove(from);
        }
        let len = self.staging.len(from)?;
        let mut bytes = vec![0; usize::try_from(len).map_err(io::Error::other)?];
        self.staging.read_at(from, 0, &mut bytes)?;
        let bytes = Bytes::from(bytes);
        let location = self.object(to);
        let put = self.block_on(self.store.put_opts(
            &location,
            PutPayload::from_bytes(bytes.clone()),
            PutOptions::from(PutMode::Create),
        ));
        match put {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                // A crash after an earlier put: the object must hold exactly these bytes.
                let existing = self
                    .block_on(async { self.store.get(&location).await?.bytes().await })
                    .map_err(store_error)?;
                if existing != bytes {
                    return Err(io::Error::from(io::ErrorKind::AlreadyExists));
                }
            }
            Err(e) => return Err(store_error(e)),
        }
        self.staging.remove(from)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        if self.staged(name)? {
            return self.staging.remove(name);
        }
        self.block_on(self.store.delete(&self.object(name)))
            .map_err(store_error)
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = self.published()?;
        for name in self.staging.list()? {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Ok(names)
    }
}

/// A user's segments wherever this server keeps them: [`ObjectSegments`] (the active segment
/// staged on the instance's disk; one instance per data directory) or
/// [`crate::parts::PartSegments`] (everything in a shared object store; any number of
/// instances).
#[derive(Debug)]
pub(crate) enum Segments {
    /// Active segment staged locally.
    Staged(ObjectSegments),
    /// Active segment as parts in the shared store.
    Shared(crate::parts::PartSegments),
}

/// The writer of a [`Segments`].
#[derive(Debug)]
pub(crate) enum SegmentsWriter {
    /// A staged file.
    Staged(FileWriter),
    /// Parts in the store.
    Shared(crate::parts::PartWriter),
}

impl cairn_archive::SegmentWriter for SegmentsWriter {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Self::Staged(w) => w.write_all(buf),
            Self::Shared(w) => w.write_all(buf),
        }
    }

    fn write_all_vectored(&mut self, bufs: &[&[u8]]) -> io::Result<()> {
        match self {
            Self::Staged(w) => w.write_all_vectored(bufs),
            Self::Shared(w) => w.write_all_vectored(bufs),
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        match self {
            Self::Staged(w) => w.sync(),
            Self::Shared(w) => w.sync(),
        }
    }
}

impl Storage for Segments {
    type Writer = SegmentsWriter;

    fn create(&self, name: &str) -> io::Result<SegmentsWriter> {
        Ok(match self {
            Self::Staged(s) => SegmentsWriter::Staged(s.create(name)?),
            Self::Shared(s) => SegmentsWriter::Shared(s.create(name)?),
        })
    }

    fn append(&self, name: &str) -> io::Result<SegmentsWriter> {
        Ok(match self {
            Self::Staged(s) => SegmentsWriter::Staged(s.append(name)?),
            Self::Shared(s) => SegmentsWriter::Shared(s.append(name)?),
        })
    }

    fn len(&self, name: &str) -> io::Result<u64> {
        match self {
            Self::Staged(s) => s.len(name),
            Self::Shared(s) => s.len(name),
        }
    }

    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        match self {
            Self::Staged(s) => s.read_at(name, offset, buf),
            Self::Shared(s) => s.read_at(name, offset, buf),
        }
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        match self {
            Self::Staged(s) => s.truncate(name, len),
            Self::Shared(s) => s.truncate(name, len),
        }
    }

    fn seal(&self, from: &str, to: &str) -> io::Result<()> {
        match self {
            Self::Staged(s) => s.seal(from, to),
            Self::Shared(s) => s.seal(from, to),
        }
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        match self {
            Self::Staged(s) => s.remove(name),
            Self::Shared(s) => s.remove(name),
        }
    }

    fn list(&self) -> io::Result<Vec<String>> {
        match self {
            Self::Staged(s) => s.list(),
            Self::Shared(s) => s.list(),
        }
    }

    fn publish(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Staged(s) => s.publish(name, bytes),
            Self::Shared(s) => s.publish(name, bytes),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use cairn_archive::{Archive, ArchiveError, Config, MIN_SEGMENT_TARGET, generation_name};

    /// A compacted generation on the embedded default's storage: staged, fsynced and linked
    /// into the local store like a sealed segment (the default `Storage::publish`), the old
    /// generation removed from the store, the staged copy gone.
    #[test]
    fn a_compacted_generation_is_published_by_link_and_the_old_one_removed() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("store")).unwrap();
        let local = Arc::new(LocalFileSystem::new_with_prefix(dir.path().join("store")).unwrap());
        let open = || {
            ObjectSegments::open(
                &dir.path().join("staging"),
                Arc::clone(&local) as Arc<dyn ObjectStore>,
                ObjectPath::from("a"),
                rt.handle().clone(),
            )
            .unwrap()
            .with_local(Arc::clone(&local))
        };
        let config = Config::new([4; 16])
            .with_segment_target(MIN_SEGMENT_TARGET)
            .unwrap();
        let (mut log, _) = Archive::open(open(), config).unwrap();
        for i in 0..6u8 {
            log.append(1, &[i; 32], &vec![i; 3000]).unwrap();
            log.commit().unwrap();
        }
        let head = log.last_commit();
        let done = log.compact(0, |k, _| k[0] == 0).unwrap();
        assert_eq!((done.generation, done.elided), (1, 1));
        drop(log);
        let store = dir.path().join("store").join("a");
        assert!(store.join(generation_name(0, 1)).exists());
        assert!(!store.join(generation_name(0, 0)).exists());
        let staged: Vec<_> = std::fs::read_dir(dir.path().join("staging"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(staged.iter().all(|n| n.ends_with(".active")), "{staged:?}");
        let (mut log, recovery) = Archive::open(open(), config).unwrap();
        assert!(recovery.removed_generations.is_empty());
        assert_eq!(log.last_commit(), head);
        assert!(matches!(
            log.get(&[0; 32]),
            Err(ArchiveError::Elided { segment: 0, .. })
        ));
        assert_eq!(log.get(&[1; 32]).unwrap().unwrap(), vec![1; 3000]);
        assert!(log.verify(|_, _, _| Ok(())).unwrap().is_clean());
    }
}
