//! A fault-injecting [`Storage`] for crash testing (B-9, B-10): it models what survives a
//! process crash (everything written) and a power loss (only what was synced, and directory
//! entries the contract made durable), injects one fault at a chosen operation, and records
//! the operation sequence.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::storage::{MemoryStorage, SegmentWriter, Storage};

/// What goes wrong at the chosen operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The process dies before the operation: everything written before survives.
    Crash,
    /// The machine loses power before the operation: only synced bytes survive.
    PowerLoss,
    /// The operation, if a write, persists only a prefix of its bytes; then the process dies.
    TornWrite,
    /// The operation fails with "no space left on device"; later operations work.
    NoSpace,
    /// The operation fails with an I/O error; later operations work.
    Io,
}

/// One storage operation, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `create(name)` (the name becomes durable at the file's first sync, or the next seal).
    Create(String),
    /// `write(name, bytes)`.
    Write(String, usize),
    /// `sync(name)`.
    Sync(String),
    /// `truncate(name, len)`.
    Truncate(String, u64),
    /// `seal(from, to)`.
    Seal(String, String),
    /// `remove(name)`.
    Remove(String),
}

#[derive(Debug, Default)]
struct File {
    volatile: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<String, File>,
    /// Names whose directory entry is durable.
    durable_names: BTreeSet<String>,
    ops: u64,
    fault: Option<(u64, Fault)>,
    fired: Option<Fault>,
    dead: bool,
    log: Vec<Op>,
    seed: u64,
}

/// The fault-injecting storage. Clones share state.
#[derive(Clone, Debug, Default)]
pub struct FaultyStorage {
    state: Arc<Mutex<State>>,
}

fn dead() -> io::Error {
    io::Error::other("crashed")
}

impl FaultyStorage {
    /// No fault.
    pub fn new() -> Self {
        Self::default()
    }

    /// Injects `fault` at operation number `at` (1-based); `seed` picks torn-write lengths.
    pub fn with_fault(at: u64, fault: Fault, seed: u64) -> Self {
        let s = Self::default();
        if let Ok(mut st) = s.state.lock() {
            st.fault = Some((at, fault));
            st.seed = seed;
        }
        s
    }

    fn lock(&self) -> io::Result<MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| io::Error::other("lock poisoned"))
    }

    /// Operations performed (or attempted) so far.
    pub fn ops(&self) -> u64 {
        self.lock().map(|s| s.ops).unwrap_or(0)
    }

    /// The recorded operations.
    pub fn log(&self) -> Vec<Op> {
        self.lock().map(|s| s.log.clone()).unwrap_or_default()
    }

    /// Whether the injected fault has happened.
    pub fn fired(&self) -> Option<Fault> {
        self.lock().ok().and_then(|s| s.fired)
    }

    /// What a restarted process finds: after a power loss only durable bytes under durable
    /// names, otherwise every byte written.
    pub fn surviving(&self) -> MemoryStorage {
        let out = MemoryStorage::new();
        if let Ok(st) = self.lock() {
            let power_loss = st.fired == Some(Fault::PowerLoss);
            for (name, f) in &st.files {
                if power_loss {
                    if st.durable_names.contains(name) {
                        out.put(name, f.durable.clone());
                    }
                } else {
                    out.put(name, f.volatile.clone());
                }
            }
        }
        out
    }

    /// Counts an operation; returns `Some(fault)` if this one fails, after applying the fault.
    fn step(&self, op: Op) -> io::Result<(MutexGuard<'_, State>, Option<Fault>)> {
        let mut st = self.lock()?;
        if st.dead {
            return Err(dead());
        }
        st.ops += 1;
        st.log.push(op);
        let fault = match st.fault {
            Some((at, f)) if at == st.ops => Some(f),
            _ => None,
        };
        if let Some(f) = fault {
            st.fired = Some(f);
            if matches!(f, Fault::Crash | Fault::PowerLoss | Fault::TornWrite) {
                st.dead = true;
            }
        }
        Ok((st, fault))
    }
}

fn fail(f: Fault) -> io::Error {
    match f {
        Fault::NoSpace => io::Error::from(io::ErrorKind::StorageFull),
        Fault::Io => io::Error::other("injected I/O error"),
        _ => dead(),
    }
}

/// A [`FaultyStorage`] writer.
#[derive(Debug)]
pub struct FaultyWriter {
    storage: FaultyStorage,
    name: String,
}

impl SegmentWriter for FaultyWriter {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let (mut st, fault) = self.storage.step(Op::Write(self.name.clone(), buf.len()))?;
        match fault {
            None => {
                st.files
                    .entry(self.name.clone())
                    .or_default()
                    .volatile
                    .extend_from_slice(buf);
                Ok(())
            }
            Some(Fault::TornWrite) => {
                // xorshift over the seed: a prefix of 0..len bytes persists.
                let mut x = st.seed | 1;
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let keep = usize::try_from(x % (buf.len() as u64 + 1)).unwrap_or(0);
                st.files
                    .entry(self.name.clone())
                    .or_default()
                    .volatile
                    .extend_from_slice(&buf[..keep]);
                Err(dead())
            }
            Some(f) => Err(fail(f)),
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        let (mut st, fault) = self.storage.step(Op::Sync(self.name.clone()))?;
        if let Some(f) = fault {
            return Err(fail(f));
        }
        let f = st.files.entry(self.name.clone()).or_default();
        f.durable = f.volatile.clone();
        // The first sync of a file also makes its name durable (the directory fsync).
        st.durable_names.insert(self.name.clone());
        Ok(())
    }
}

impl Storage for FaultyStorage {
    type Writer = FaultyWriter;

    fn create(&self, name: &str) -> io::Result<FaultyWriter> {
        let (mut st, fault) = self.step(Op::Create(name.to_owned()))?;
        if let Some(f) = fault {
            return Err(fail(f));
        }
        if st.files.contains_key(name) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        // Not durable yet: the name survives a power loss only after a sync or a seal.
        st.files.insert(name.to_owned(), File::default());
        Ok(FaultyWriter {
            storage: self.clone(),
            name: name.to_owned(),
        })
    }

    fn append(&self, name: &str) -> io::Result<FaultyWriter> {
        let st = self.lock()?;
        if st.dead {
            return Err(dead());
        }
        if !st.files.contains_key(name) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        Ok(FaultyWriter {
            storage: self.clone(),
            name: name.to_owned(),
        })
    }

    fn len(&self, name: &str) -> io::Result<u64> {
        let st = self.lock()?;
        if st.dead {
            return Err(dead());
        }
        st.files
            .get(name)
            .map(|f| f.volatile.len() as u64)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let st = self.lock()?;
        if st.dead {
            return Err(dead());
        }
        let f = st
            .files
            .get(name)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let start =
            usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let src = f
            .volatile
            .get(start..start.saturating_add(buf.len()))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        let (mut st, fault) = self.step(Op::Truncate(name.to_owned(), len))?;
        if let Some(f) = fault {
            return Err(fail(f));
        }
        let f = st
            .files
            .get_mut(name)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        f.volatile.truncate(len);
        f.durable = f.volatile.clone();
        Ok(())
    }

    fn seal(&self, from: &str, to: &str) -> io::Result<()> {
        let (mut st, fault) = self.step(Op::Seal(from.to_owned(), to.to_owned()))?;
        if let Some(f) = fault {
            return Err(fail(f));
        }
        let file = st
            .files
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        st.files.insert(to.to_owned(), file);
        // The directory fsync after the rename makes every current name durable.
        st.durable_names = st.files.keys().cloned().collect();
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let (mut st, fault) = self.step(Op::Remove(name.to_owned()))?;
        if let Some(f) = fault {
            return Err(fail(f));
        }
        st.files.remove(name);
        st.durable_names = st.files.keys().cloned().collect();
        Ok(())
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let st = self.lock()?;
        if st.dead {
            return Err(dead());
        }
        Ok(st.files.keys().cloned().collect())
    }
}
