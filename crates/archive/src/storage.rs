//! Where segments live: a small trait, an in-memory implementation and a local directory.
//!
//! The contract each implementation keeps (the archive's durability rests on it):
//!
//! - [`Storage::create`] makes a new, empty file. It fails if the name exists. The new name is
//!   durable once the first [`SegmentWriter::sync`] of that file returns `Ok` (or the next
//!   [`Storage::seal`]): a directory implementation fsyncs the directory in the file's first sync.
//! - [`SegmentWriter::write_all`] appends; the bytes may be lost on power failure until
//!   [`SegmentWriter::sync`] returns `Ok` (fsync of the file, and of the directory the first
//!   time). A failed `sync` means nothing about what reached the medium.
//! - [`Storage::truncate`] cuts a file and makes the cut durable before returning.
//! - [`Storage::seal`] publishes a finished file under its final, immutable name atomically and
//!   durably (rename, then fsync the directory). A sealed name is never written again, which is
//!   what an object store's create-only put gives too.
//! - [`Storage::publish`] writes a whole immutable file under a name that does not exist yet,
//!   atomically and durably: after a crash the name holds either nothing or every byte. The
//!   default does it with the calls above (`create` of `<name>.tmp`, write, sync, `seal`); an
//!   object store does it with one create-only put. Compaction publishes new segment
//!   generations with it.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
#[cfg(not(unix))]
use std::io::Read;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Appends to one file.
pub trait SegmentWriter: Send + Sync {
    /// Appends `buf`.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Appends each of `bufs` in order (one system call where the storage can).
    fn write_all_vectored(&mut self, bufs: &[&[u8]]) -> io::Result<()> {
        for b in bufs {
            self.write_all(b)?;
        }
        Ok(())
    }
    /// Appends `head` then `payload`, taking ownership of the payload so that a storage that
    /// keeps bytes in memory can store it without copying.
    fn write_all_owned(&mut self, head: &[u8], payload: Vec<u8>) -> io::Result<()> {
        self.write_all_vectored(&[head, &payload])
    }
    /// Makes everything written so far durable.
    fn sync(&mut self) -> io::Result<()>;
}

/// A flat namespace of files.
pub trait Storage: Send + Sync {
    /// The writer type.
    type Writer: SegmentWriter;
    /// Creates a new empty file; durable directory entry on return; fails if it exists.
    fn create(&self, name: &str) -> io::Result<Self::Writer>;
    /// Opens an existing file to append at its end (the active segment after recovery).
    fn append(&self, name: &str) -> io::Result<Self::Writer>;
    /// The file's length.
    fn len(&self, name: &str) -> io::Result<u64>;
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Truncates to `len` bytes, durably.
    fn truncate(&self, name: &str, len: u64) -> io::Result<()>;
    /// Publishes `from` as the immutable `to`, atomically and durably.
    fn seal(&self, from: &str, to: &str) -> io::Result<()>;
    /// Removes a file (durably).
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Every name, in no particular order.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Writes `bytes` as the new immutable file `name`, atomically and durably; fails if `name`
    /// exists (see the module docs). The default stages `<name>.tmp` and seals it.
    fn publish(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let staged = format!("{name}.tmp");
        if self.len(&staged).is_ok() {
            // Left by an earlier attempt that failed part-way.
            self.remove(&staged)?;
        }
        let mut writer = self.create(&staged)?;
        writer.write_all(bytes)?;
        writer.sync()?;
        drop(writer);
        self.seal(&staged, name)
    }
}

fn lock<T>(m: &Mutex<T>) -> io::Result<MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| io::Error::other("storage lock poisoned"))
}

/// One in-memory file: a list of chunks, so that appending never copies what is already
/// stored (a growing `Vec` would re-copy the whole file on every doubling).
#[derive(Debug, Default)]
struct MemFile {
    chunks: Vec<Vec<u8>>,
    /// End offset of each chunk (cumulative lengths), for reads.
    ends: Vec<u64>,
}

/// Small writes are gathered into chunks of this capacity; larger ones become their own chunk.
const MEM_CHUNK: usize = 256 << 10;

impl MemFile {
    fn from_bytes(bytes: Vec<u8>) -> Self {
        let mut f = Self::default();
        if !bytes.is_empty() {
            f.ends.push(bytes.len() as u64);
            f.chunks.push(bytes);
        }
        f
    }

    fn len(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    fn append(&mut self, buf: &[u8]) {
        if buf.is_empty() {
            return;
        }
        let len = self.len() + buf.len() as u64;
        match self.chunks.last_mut() {
            Some(last) if buf.len() < MEM_CHUNK && last.capacity() - last.len() >= buf.len() => {
                last.extend_from_slice(buf);
                if let Some(end) = self.ends.last_mut() {
                    *end = len;
                }
            }
            _ => {
                let mut chunk = Vec::with_capacity(buf.len().max(if buf.len() < MEM_CHUNK {
                    MEM_CHUNK
                } else {
                    0
                }));
                chunk.extend_from_slice(buf);
                self.chunks.push(chunk);
                self.ends.push(len);
            }
        }
    }

    /// Appends `chunk` as it is, without copying.
    fn push_owned(&mut self, chunk: Vec<u8>) {
        if !chunk.is_empty() {
            self.ends.push(self.len() + chunk.len() as u64);
            self.chunks.push(chunk);
        }
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let mut i = self.ends.partition_point(|&e| e <= offset);
        let mut pos = offset;
        let mut out = 0;
        while pos < end {
            let chunk = self
                .chunks
                .get(i)
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            let chunk_start = self.ends[i] - chunk.len() as u64;
            let from = usize::try_from(pos - chunk_start).map_err(io::Error::other)?;
            let n = (chunk.len() - from).min(buf.len() - out);
            buf[out..out + n].copy_from_slice(&chunk[from..from + n]);
            out += n;
            pos += n as u64;
            i += 1;
        }
        Ok(())
    }

    fn truncate(&mut self, len: u64) {
        while let Some(&end) = self.ends.last() {
            let Some(last) = self.chunks.last_mut() else {
                break;
            };
            let start = end - last.len() as u64;
            if start >= len {
                self.chunks.pop();
                self.ends.pop();
            } else {
                if end > len {
                    last.truncate(usize::try_from(len - start).unwrap_or(last.len()));
                    if let Some(e) = self.ends.last_mut() {
                        *e = len;
                    }
                }
                break;
            }
        }
    }

    fn to_vec(&self) -> Vec<u8> {
        self.chunks.concat()
    }
}

type Files = Arc<Mutex<BTreeMap<String, Arc<Mutex<MemFile>>>>>;

/// Files in memory. Clones share the same files. Everything is "durable" at once.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    files: Files,
}

impl MemoryStorage {
    /// No files.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of a file's bytes (for tests that damage files).
    pub fn get(&self, name: &str) -> Option<Vec<u8>> {
        let files = lock(&self.files).ok()?;
        let file = files.get(name)?;
        lock(file).ok().map(|f| f.to_vec())
    }

    /// Replaces a file's bytes (for tests that damage files).
    pub fn put(&self, name: &str, bytes: Vec<u8>) {
        if let Ok(mut files) = lock(&self.files) {
            files.insert(
                name.to_owned(),
                Arc::new(Mutex::new(MemFile::from_bytes(bytes))),
            );
        }
    }

    fn file(&self, name: &str) -> io::Result<Arc<Mutex<MemFile>>> {
        lock(&self.files)?
            .get(name)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
}

/// A [`MemoryStorage`] writer.
#[derive(Debug)]
pub struct MemoryWriter(Arc<Mutex<MemFile>>);

impl SegmentWriter for MemoryWriter {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        lock(&self.0)?.append(buf);
        Ok(())
    }

    fn write_all_owned(&mut self, head: &[u8], payload: Vec<u8>) -> io::Result<()> {
        let mut f = lock(&self.0)?;
        f.append(head);
        f.push_owned(payload);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Storage for MemoryStorage {
    type Writer = MemoryWriter;

    fn create(&self, name: &str) -> io::Result<MemoryWriter> {
        let mut files = lock(&self.files)?;
        if files.contains_key(name) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        let file = Arc::new(Mutex::new(MemFile::default()));
        files.insert(name.to_owned(), file.clone());
        Ok(MemoryWriter(file))
    }

    fn append(&self, name: &str) -> io::Result<MemoryWriter> {
        Ok(MemoryWriter(self.file(name)?))
    }

    fn len(&self, name: &str) -> io::Result<u64> {
        let file = self.file(name)?;
        let len = lock(&file)?.len();
        Ok(len)
    }

    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let file = self.file(name)?;
        let f = lock(&file)?;
        f.read_at(offset, buf)
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        let file = self.file(name)?;
        lock(&file)?.truncate(len);
        Ok(())
    }

    fn seal(&self, from: &str, to: &str) -> io::Result<()> {
        let mut files = lock(&self.files)?;
        if files.contains_key(to) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        let file = files
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        files.insert(to.to_owned(), file);
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        lock(&self.files)?
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(lock(&self.files)?.keys().cloned().collect())
    }
}

/// Files in one local directory, following the durability protocol in the module docs.
#[derive(Clone, Debug)]
pub struct DirStorage {
    dir: PathBuf,
    /// Read handles, opened once per file (lookups read sealed segments at random).
    readers: Arc<Mutex<BTreeMap<String, Arc<File>>>>,
}

impl DirStorage {
    /// Uses `dir`, creating it (and syncing its parent) if needed.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.exists() {
            // Private to this user, as the files in it (segments are ciphertext, but their
            // sizes and times are not for other local users).
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(&dir)?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(Self {
            dir,
            readers: Arc::default(),
        })
    }

    fn reader(&self, name: &str) -> io::Result<Arc<File>> {
        let mut readers = lock(&self.readers)?;
        if let Some(f) = readers.get(name) {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(self.path(name)?)?);
        readers.insert(name.to_owned(), f.clone());
        Ok(f)
    }

    fn forget(&self, name: &str) -> io::Result<()> {
        lock(&self.readers)?.remove(name);
        Ok(())
    }

    /// The path of the file `name` (which need not exist), for a layer that hands the file to
    /// something else, such as a server publishing a sealed segment into a local object store
    /// by hard link.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidInput`] for a name the archive would never use (one that could
    /// leave the directory).
    pub fn file_path(&self, name: &str) -> io::Result<PathBuf> {
        self.path(name)
    }

    fn path(&self, name: &str) -> io::Result<PathBuf> {
        // Names come from the archive (`seg-<16 hex>[.active]`); refuse anything else so that a
        // name can never leave the directory.
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !name.starts_with('.');
        if ok {
            Ok(self.dir.join(name))
        } else {
            Err(io::Error::from(io::ErrorKind::InvalidInput))
        }
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_exact_at(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let mut f = file.try_clone()?;
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A [`DirStorage`] writer: a file opened for appending.
#[derive(Debug)]
pub struct FileWriter {
    file: File,
    /// The directory to fsync at the first sync, for a file this writer created.
    new_in: Option<PathBuf>,
    /// Starts the write-back of what was appended before the next sync asks for it.
    behind: WriteBehind,
}

/// Bytes appended since the last request after which [`WriteBehind`] is asked to write them
/// back.
const WRITE_BEHIND_BYTES: u64 = 8 << 20;

/// Write-behind: a thread that syncs the file, through a file description of its own, when asked
/// (every [`WRITE_BEHIND_BYTES`] appended). The data of a long run of appends then reaches the
/// disk while the writer goes on, and the writer's own [`SegmentWriter::sync`] (a commit) finds
/// little left to wait for. It changes no durability rule: only the writer's `sync`
/// acknowledges anything. A failure it sees is remembered and fails the writer's next `sync`
/// (Linux also reports a write-back error to every description open when it happened, so the
/// writer's own fdatasync sees it too).
///
/// The thread is started at the first request and ends after [`WRITE_BEHIND_IDLE`] without one,
/// so a writer that commits small batches (the server's, one per request) never has one, and
/// many open writers do not hold many idle threads.
#[derive(Debug)]
struct WriteBehind {
    path: PathBuf,
    kick: Option<std::sync::mpsc::SyncSender<()>>,
    state: Arc<BehindState>,
    since_kick: u64,
}

/// How long a write-behind thread waits for the next request before it ends.
const WRITE_BEHIND_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, Default)]
struct BehindState {
    failed: std::sync::atomic::AtomicBool,
    /// Syncs done, for tests.
    syncs: std::sync::atomic::AtomicU64,
    /// Threads started and ended, for tests.
    started: std::sync::atomic::AtomicU64,
    ended: std::sync::atomic::AtomicU64,
}

impl WriteBehind {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            kick: None,
            state: Arc::default(),
            since_kick: 0,
        }
    }

    fn wrote(&mut self, n: usize) {
        self.since_kick += n as u64;
        if self.since_kick < WRITE_BEHIND_BYTES {
            return;
        }
        self.since_kick = 0;
        use std::sync::mpsc::TrySendError;
        match self.kick.as_ref().map(|k| k.try_send(())) {
            // Asked; or already asked, and that sync will cover these bytes too.
            Some(Ok(()) | Err(TrySendError::Full(()))) => {}
            // No thread, or it ended for idleness: start one. If it cannot be started, the
            // commit does all the waiting, as without write-behind.
            Some(Err(TrySendError::Disconnected(()))) | None => self.kick = self.spawn(),
        }
    }

    /// A thread with one sync already asked of it.
    fn spawn(&self) -> Option<std::sync::mpsc::SyncSender<()>> {
        use std::sync::atomic::Ordering;
        // Opened for writing (never written through) so that the sync works on every platform.
        let file = OpenOptions::new().write(true).open(&self.path).ok()?;
        let (kick, asked) = std::sync::mpsc::sync_channel::<()>(1);
        kick.try_send(()).ok()?;
        let state = self.state.clone();
        std::thread::Builder::new()
            .name("cairn-write-behind".into())
            .spawn(move || {
                state.started.fetch_add(1, Ordering::Release);
                // Ends when idle or when the writer (the only sender) is dropped. A request
                // sent just as it ends for idleness is lost: one sync fewer, nothing more.
                while asked.recv_timeout(WRITE_BEHIND_IDLE).is_ok() {
                    if file.sync_data().is_err() {
                        state.failed.store(true, Ordering::Release);
                    }
                    state.syncs.fetch_add(1, Ordering::Release);
                }
                state.ended.fetch_add(1, Ordering::Release);
            })
            .ok()?;
        Some(kick)
    }

    fn failed(&self) -> bool {
        self.state.failed.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl SegmentWriter for FileWriter {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)?;
        self.behind.wrote(buf.len());
        Ok(())
    }

    fn write_all_vectored(&mut self, bufs: &[&[u8]]) -> io::Result<()> {
        let mut slices: Vec<io::IoSlice<'_>> = bufs.iter().map(|b| io::IoSlice::new(b)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match self.file.write_vectored(rest) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => io::IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.behind.wrote(bufs.iter().map(|b| b.len()).sum());
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        // fdatasync: the data and the length; the inode's times need not be durable.
        self.file.sync_data()?;
        if self.behind.failed() {
            return Err(io::Error::other(
                "an earlier write-back of this file failed",
            ));
        }
        // The first sync of a new file also makes its directory entry durable.
        if let Some(dir) = &self.new_in {
            sync_dir(dir)?;
            self.new_in = None;
        }
        Ok(())
    }
}

impl Storage for DirStorage {
    type Writer = FileWriter;

    fn create(&self, name: &str) -> io::Result<FileWriter> {
        let path = self.path(name)?;
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path)?;
        Ok(FileWriter {
            file,
            new_in: Some(self.dir.clone()),
            behind: WriteBehind::new(path),
        })
    }

    fn append(&self, name: &str) -> io::Result<FileWriter> {
        let path = self.path(name)?;
        let mut file = OpenOptions::new().write(true).open(&path)?;
        file.seek(SeekFrom::End(0))?;
        // A file found at recovery may have been created by a process that died before its
        // first sync: sync the directory too, once.
        Ok(FileWriter {
            file,
            new_in: Some(self.dir.clone()),
            behind: WriteBehind::new(path),
        })
    }

    fn len(&self, name: &str) -> io::Result<u64> {
        Ok(fs::metadata(self.path(name)?)?.len())
    }

    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let file = self.reader(name)?;
        read_exact_at(&file, offset, buf)
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        self.forget(name)?;
        let file = OpenOptions::new().write(true).open(self.path(name)?)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn seal(&self, from: &str, to: &str) -> io::Result<()> {
        self.forget(from)?;
        let (from, to) = (self.path(from)?, self.path(to)?);
        if to.exists() {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        // The file's bytes were synced by the archive before it asked to seal.
        fs::rename(from, to)?;
        sync_dir(&self.dir)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.forget(name)?;
        fs::remove_file(self.path(name)?)?;
        sync_dir(&self.dir)
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }
}

#[cfg(test)]
// Test code: offsets are small; truncating casts cannot happen here.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A directory writer syncs behind the writes after every `WRITE_BEHIND_BYTES`, on a
    /// thread that ends when idle and comes back when needed; a failure of that background sync
    /// fails the writer's next sync.
    #[test]
    fn files_are_written_behind_and_a_failure_there_fails_the_commit() {
        use std::sync::atomic::Ordering;
        // Liveness waits, not time bounds.
        let wait_for = |what: &str, done: &dyn Fn() -> bool| {
            let start = std::time::Instant::now();
            while !done() {
                assert!(start.elapsed().as_secs() < 60, "{what}");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let storage = DirStorage::open(dir.path()).unwrap();
        let mut w = storage.create("seg-0000000000000001.active").unwrap();
        let state = w.behind.state.clone();
        let block = vec![7u8; 1 << 20];
        // Less than the threshold: no thread, nothing asked.
        for _ in 0..7 {
            w.write_all_vectored(&[&block]).unwrap();
        }
        assert!(w.behind.kick.is_none());
        w.write_all(&block).unwrap();
        wait_for("no write-behind sync", &|| {
            state.syncs.load(Ordering::Acquire) == 1
        });
        w.sync().unwrap();
        assert_eq!(storage.len("seg-0000000000000001.active").unwrap(), 8 << 20);
        // Idle, the thread ends (its receiver goes); the next request starts another.
        wait_for("idle thread still running", &|| {
            state.ended.load(Ordering::Acquire) == 1
        });
        for _ in 0..8 {
            w.write_all(&block).unwrap();
        }
        wait_for("no second write-behind sync", &|| {
            state.syncs.load(Ordering::Acquire) >= 2
        });
        assert_eq!(state.started.load(Ordering::Acquire), 2);
        state.failed.store(true, Ordering::Release);
        assert!(w.sync().is_err());
    }

    proptest! {
        /// The chunked in-memory file behaves exactly like one `Vec<u8>`.
        #[test]
        fn mem_file_matches_a_vec(
            ops in proptest::collection::vec((0u8..3, 0usize..600_000, any::<u64>()), 1..40)
        ) {
            let mut model: Vec<u8> = Vec::new();
            let mut f = MemFile::default();
            for (op, n, r) in ops {
                match op {
                    0 => {
                        let buf: Vec<u8> = (0..n % 300_000).map(|i| (i as u64 ^ r) as u8).collect();
                        model.extend_from_slice(&buf);
                        f.append(&buf);
                    }
                    1 => {
                        let len = if model.is_empty() { 0 } else { r % (model.len() as u64 + 1) };
                        model.truncate(len as usize);
                        f.truncate(len);
                    }
                    _ => {
                        let off = if model.is_empty() { 0 } else { r % model.len() as u64 };
                        let want = (n % 70_000).min(model.len() - off as usize);
                        let mut buf = vec![0u8; want];
                        f.read_at(off, &mut buf).unwrap();
                        prop_assert_eq!(&buf[..], &model[off as usize..off as usize + want]);
                        let mut past = vec![0u8; model.len() - off as usize + 1];
                        prop_assert!(f.read_at(off, &mut past).is_err());
                    }
                }
                prop_assert_eq!(f.len(), model.len() as u64);
                prop_assert_eq!(f.to_vec(), model.clone());
            }
        }
    }
}
