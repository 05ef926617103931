//! A user's segments entirely in an object store (S3), for servers that share one: the active
//! segment is a sequence of immutable *part* objects, one per commit, so that an acknowledged
//! block is durable in the store itself and any instance can take the archive over.
//!
//! | object | what |
//! | --- | --- |
//! | `PREFIX/<segment name>` | a sealed segment (create-only, never rewritten) |
//! | `PREFIX/active/<segment name>/<part, 10 digits>` | the bytes of one sync of the active segment |
//!
//! Appends are serialized by the store, not by trust in a lease (`docs/design/0004-scale-out.md`):
//! - Part `n` is written with a create-only put (`If-None-Match: *`), so each part number is
//!   written once: two writers that both believe they own the archive collide on the same number
//!   and the loser's sync fails (it acknowledges nothing and must reopen).
//! - After its put succeeds, a sync asks the [`Fence`] (the lease's epoch in the database) whether
//!   another instance has taken the archive meanwhile; if so the sync fails. An instance that takes
//!   the lease lists the parts after taking it, so a part whose sync succeeded is one it sees.
//! - Sealing puts the concatenated parts as the sealed object (create-only; an existing one must
//!   hold the same bytes), then deletes the parts. Parts of a segment already sealed
//!   (`seg-X.active` beside `seg-X`: a crash between the two, or a fenced-off writer's late part)
//!   are ignored and removed when the archive opens.
//!
//! Recovery may cut the active segment: past a torn tail, or before a footer that was written
//! with the segment's last commit when a crash came before the seal. [`Storage::truncate`]
//! deletes whole parts past the cut; a cut inside a part (parts are immutable) is recorded by a
//! create-only marker `<part>.cut` holding the part's new length, which every read honours.
//!
//! The trait is synchronous: calls block on the runtime's handle, so use this from blocking
//! threads only (like the private `segments::ObjectSegments`).

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use cairn_archive::{SegmentWriter, Storage};
use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::runtime::Handle;

use crate::objects::{store_error, superseded};

/// Asked after each part is written: `Ok` if this instance still holds the archive (nobody else
/// can have appended since it opened it), an error otherwise.
pub type Fence = Arc<dyn Fn() -> io::Result<()> + Send + Sync>;

/// The part lengths of each active segment, by segment name.
type Parts = BTreeMap<String, Vec<u64>>;

/// Every part object listed: by segment name, then part number, its length.
type Listed = BTreeMap<String, BTreeMap<usize, u64>>;

struct Inner {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    runtime: Handle,
    fence: Fence,
    parts: Mutex<Parts>,
}

/// A user's segments in an object store, active ones as parts (see the module docs).
#[derive(Clone)]
pub struct PartSegments(Arc<Inner>);

impl std::fmt::Debug for PartSegments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartSegments")
            .field("store", &self.0.store.to_string())
            .field("prefix", &self.0.prefix.as_ref())
            .finish_non_exhaustive()
    }
}

fn lock(m: &Mutex<Parts>) -> io::Result<MutexGuard<'_, Parts>> {
    m.lock()
        .map_err(|_| io::Error::other("segment parts lock poisoned"))
}

/// The suffix of a part's cut marker (`<part>.cut`, holding the part's length after a cut).
const CUT: &str = ".cut";

/// A part's object name: ten digits, so that names sort by number.
fn part_name(n: usize) -> String {
    format!("{n:010}")
}

impl Inner {
    fn sealed(&self, name: &str) -> ObjectPath {
        self.prefix.clone().join(name)
    }

    fn part(&self, name: &str, n: usize) -> ObjectPath {
        self.prefix
            .clone()
            .join("active")
            .join(name)
            .join(part_name(n))
    }

    fn cut(&self, name: &str, n: usize) -> ObjectPath {
        self.prefix
            .clone()
            .join("active")
            .join(name)
            .join(format!("{}{CUT}", part_name(n)))
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Sealed names and every part object found, by segment name and part number.
    fn scan(&self) -> io::Result<(Vec<String>, Listed)> {
        let metas: Vec<object_store::ObjectMeta> = self
            .block_on(self.store.list(Some(&self.prefix)).try_collect())
            .map_err(store_error)?;
        let depth = self.prefix.parts().count();
        let mut sealed = Vec::new();
        let mut parts: BTreeMap<String, BTreeMap<usize, u64>> = BTreeMap::new();
        let mut cuts = Vec::new();
        for m in metas {
            let rest: Vec<String> = m
                .location
                .parts()
                .skip(depth)
                .map(|p| p.as_ref().to_owned())
                .collect();
            match rest.as_slice() {
                [name] => sealed.push(name.clone()),
                [active, name, part] if active == "active" => {
                    let bad = || io::Error::other(format!("unexpected part object {part}"));
                    if let Some(stem) = part.strip_suffix(CUT) {
                        cuts.push((name.clone(), stem.parse::<usize>().map_err(|_| bad())?));
                    } else {
                        let n: usize = part.parse().map_err(|_| bad())?;
                        parts.entry(name.clone()).or_default().insert(n, m.size);
                    }
                }
                _ => {}
            }
        }
        // A cut marker shortens its part (recovery cut a footer or an uncommitted tail inside
        // it); it never lengthens one, and never names a missing part.
        for (name, n) in cuts {
            let text = self
                .block_on(async { self.store.get(&self.cut(&name, n)).await?.bytes().await })
                .map_err(store_error)?;
            let len: u64 = std::str::from_utf8(&text)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .ok_or_else(|| io::Error::other(format!("{name}: unreadable cut marker {n}")))?;
            match parts.get_mut(&name).and_then(|p| p.get_mut(&n)) {
                Some(size) if len <= *size => *size = len,
                _ => {
                    return Err(io::Error::other(format!(
                        "{name}: cut marker {n} does not fit its part"
                    )));
                }
            }
        }
        Ok((sealed, parts))
    }

    /// The parts of active segments (names not sealed): numbered from 0 without gaps, since
    /// each is put only after the one before it succeeded. A gap means a part is missing,
    /// which recovery must not paper over.
    fn active(sealed: &[String], parts: &Listed) -> io::Result<Parts> {
        let mut out = Parts::new();
        for (name, numbered) in parts {
            if superseded(name, sealed) {
                continue;
            }
            if numbered.keys().copied().ne(0..numbered.len()) {
                return Err(io::Error::other(format!(
                    "active segment {name}: parts are not numbered 0..n"
                )));
            }
            out.insert(name.clone(), numbered.values().copied().collect());
        }
        Ok(out)
    }

    /// Deletes part `n` and its cut marker, if any (the marker first: a part without its
    /// marker would read longer than it was cut to).
    fn delete_part(&self, name: &str, n: usize) -> io::Result<()> {
        for location in [self.cut(name, n), self.part(name, n)] {
            match self.block_on(self.store.delete(&location)) {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error(e)),
            }
        }
        Ok(())
    }

    fn delete_parts(&self, name: &str, from: usize, count: usize) -> io::Result<()> {
        // Last first: an interrupted removal leaves parts numbered 0..k, never a gap.
        for n in (from..count).rev() {
            self.delete_part(name, n)?;
        }
        Ok(())
    }

    fn put_create(&self, location: &ObjectPath, bytes: Bytes) -> Result<(), object_store::Error> {
        self.block_on(self.store.put_opts(
            location,
            PutPayload::from_bytes(bytes),
            PutOptions::from(PutMode::Create),
        ))
        .map(|_| ())
    }

    /// A create-only put that an earlier put of the same object may have done already (a
    /// crash after it, or another instance doing the same work): whether the object now holds
    /// exactly `bytes`.
    fn put_create_or_same(&self, location: &ObjectPath, bytes: Bytes) -> io::Result<bool> {
        match self.put_create(location, bytes.clone()) {
            Ok(()) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let existing = self
                    .block_on(async { self.store.get(location).await?.bytes().await })
                    .map_err(store_error)?;
                Ok(existing == bytes)
            }
            Err(e) => Err(store_error(e)),
        }
    }
}

impl PartSegments {
    /// The segments under `prefix` in `store`; `fence` is asked after every part written.
    /// Removes parts left beside a sealed segment of the same name (see the module docs).
    ///
    /// # Errors
    /// Listing or deleting in the store failed, or an active segment's parts have a gap.
    pub fn open(
        store: Arc<dyn ObjectStore>,
        prefix: ObjectPath,
        runtime: Handle,
        fence: Fence,
    ) -> io::Result<Self> {
        let inner = Inner {
            store,
            prefix,
            runtime,
            fence,
            parts: Mutex::default(),
        };
        let (sealed, parts) = inner.scan()?;
        // Parts of a segment already sealed (`seg-X.active` beside `seg-X`): an interrupted
        // seal's, or a fenced-off writer's late part (any number, so removed by the numbers
        // found, highest first).
        for (name, numbered) in &parts {
            if superseded(name, &sealed) {
                for &n in numbered.keys().rev() {
                    inner.delete_part(name, n)?;
                }
            }
        }
        *lock(&inner.parts)? = Inner::active(&sealed, &parts)?;
        Ok(Self(Arc::new(inner)))
    }

    fn writer(&self, name: &str, next: usize) -> PartWriter {
        PartWriter {
            segments: Arc::clone(&self.0),
            name: name.to_owned(),
            next,
            buffer: Vec::new(),
        }
    }
}

impl Storage for PartSegments {
    type Writer = PartWriter;

    fn create(&self, name: &str) -> io::Result<PartWriter> {
        let mut parts = lock(&self.0.parts)?;
        if parts.get(name).is_some_and(|p| !p.is_empty()) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        parts.insert(name.to_owned(), Vec::new());
        Ok(self.writer(name, 0))
    }

    fn append(&self, name: &str) -> io::Result<PartWriter> {
        let count = lock(&self.0.parts)?
            .get(name)
            .map(Vec::len)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(self.writer(name, count))
    }

    fn len(&self, name: &str) -> io::Result<u64> {
        if let Some(p) = lock(&self.0.parts)?.get(name) {
            return Ok(p.iter().sum());
        }
        let meta = self
            .0
            .block_on(self.0.store.head(&self.0.sealed(name)))
            .map_err(store_error)?;
        Ok(meta.size)
    }

    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let parts = lock(&self.0.parts)?.get(name).cloned();
        let Some(parts) = parts else {
            let bytes = self
                .0
                .block_on(self.0.store.get_range(&self.0.sealed(name), offset..end))
                .map_err(store_error)?;
            if bytes.len() != buf.len() {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            buf.copy_from_slice(&bytes);
            return Ok(());
        };
        // The parts the range touches, each read for its share.
        let mut start = 0u64;
        let mut filled = 0usize;
        for (n, &len) in parts.iter().enumerate() {
            let (lo, hi) = (start, start + len);
            start = hi;
            if hi <= offset || lo >= end || len == 0 {
                continue;
            }
            let (from, to) = (offset.max(lo) - lo, end.min(hi) - lo);
            let bytes = self
                .0
                .block_on(self.0.store.get_range(&self.0.part(name, n), from..to))
                .map_err(store_error)?;
            let want = usize::try_from(to - from).map_err(io::Error::other)?;
            if bytes.len() != want {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            buf[filled..filled + want].copy_from_slice(&bytes);
            filled += want;
        }
        if filled != buf.len() {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        Ok(())
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        let mut parts = lock(&self.0.parts)?;
        let p = parts
            .get_mut(name)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        // The part the cut falls in (`keep` whole parts stay before it), and how much of it stays.
        let mut start = 0u64;
        let mut keep = 0usize;
        while keep < p.len() && start + p[keep] <= len {
            start += p[keep];
            keep += 1;
        }
        let inside = len - start;
        if keep == p.len() && inside > 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // Whole parts past the cut go first (highest first: never a gap).
        let last = if inside > 0 { keep + 1 } else { keep };
        self.0.delete_parts(name, last, p.len())?;
        p.truncate(last);
        if inside > 0 {
            // A cut inside part `keep` (a footer written with its last commit, then a crash
            // before the seal): parts are immutable, so a create-only marker records the
            // part's new length. Nothing acknowledged is ever deleted.
            let marker = self.0.cut(name, keep);
            if !self
                .0
                .put_create_or_same(&marker, Bytes::from(inside.to_string()))?
            {
                return Err(io::Error::other(format!(
                    "{name}: part {keep} was cut to another length before"
                )));
            }
            p[keep] = inside;
        }
        Ok(())
    }

    fn seal(&self, from: &str, to: &str) -> io::Result<()> {
        let len = self.len(from)?;
        let mut bytes = vec![0; usize::try_from(len).map_err(io::Error::other)?];
        self.read_at(from, 0, &mut bytes)?;
        let bytes = Bytes::from(bytes);
        // Sealed already (a crash after the put, or another instance that recovered this
        // segment): it must hold exactly these bytes.
        if !self.0.put_create_or_same(&self.0.sealed(to), bytes)? {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        let count = lock(&self.0.parts)?.remove(from).map_or(0, |p| p.len());
        self.0.delete_parts(from, 0, count)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let parts = lock(&self.0.parts)?.remove(name);
        match parts {
            Some(p) => self.0.delete_parts(name, 0, p.len()),
            None => self
                .0
                .block_on(self.0.store.delete(&self.0.sealed(name)))
                .map_err(store_error),
        }
    }

    /// A compacted generation: one create-only put (parts are for a segment still appended to).
    fn publish(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        if self
            .0
            .put_create_or_same(&self.0.sealed(name), Bytes::copy_from_slice(bytes))?
        {
            Ok(())
        } else {
            Err(io::Error::from(io::ErrorKind::AlreadyExists))
        }
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let (mut names, _) = self.0.scan()?;
        // Active names come from this handle's own view (parts it has seen or written).
        for (name, p) in lock(&self.0.parts)?.iter() {
            if !p.is_empty() && !names.contains(name) {
                names.push(name.clone());
            }
        }
        Ok(names)
    }
}

/// Appends to an active segment: bytes gather in memory; each [`SegmentWriter::sync`] writes
/// them as the next part (create-only), then asks the fence.
pub struct PartWriter {
    segments: Arc<Inner>,
    name: String,
    next: usize,
    buffer: Vec<u8>,
}

impl std::fmt::Debug for PartWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartWriter")
            .field("name", &self.name)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl SegmentWriter for PartWriter {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.buffer.extend_from_slice(buf);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let s = &self.segments;
        let bytes = Bytes::from(std::mem::take(&mut self.buffer));
        let len = bytes.len() as u64;
        match s.put_create(&s.part(&self.name, self.next), bytes) {
            Ok(()) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(io::Error::other(
                    "another writer appended to this archive (part exists); reopen it",
                ));
            }
            Err(e) => return Err(store_error(e)),
        }
        (s.fence)()?;
        let mut parts = lock(&s.parts)?;
        let p = parts.entry(self.name.clone()).or_default();
        if p.len() != self.next {
            return Err(io::Error::other(
                "active segment parts changed under a writer",
            ));
        }
        p.push(len);
        self.next += 1;
        Ok(())
    }
}
