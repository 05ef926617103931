//! The event spool: a durable local queue of event batches (redb), so that events survive agent
//! restarts and server outages and reach the server exactly once (the server keeps one copy per
//! device and batch sequence, so a batch resent after a lost answer is not stored twice).
//!
//! Bounded: when adding a batch would take the spool past its byte limit, the **oldest** batches
//! are dropped until it fits, and the events dropped are counted (`status` shows the count; it
//! is never reset). A batch the server refuses as malformed is dropped and counted the same way,
//! so that one bad batch cannot block the queue forever. The policy is in
//! `docs/format/agent.md`.
//!
//! The spool also keeps the watcher's **observations**: each changed path with the first time it
//! was seen since the last backup that made events. They are durable, so activity seen while the
//! server is unreachable keeps its time across agent restarts; the next backup's events carry
//! those times, and the observations they cover are cleared in the same transaction that queues
//! the events.

use std::path::Path;

use cairn_events::v1::{EventBatch, FileEvent};
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::AgentError;

const BATCHES: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("batches-v1");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta-v1");
/// Path (OS bytes) -> (first, last) time seen (Unix ns).
const OBSERVED: TableDefinition<'_, &[u8], (i64, i64)> = TableDefinition::new("observed-v1");

/// Most paths observed between two backups; further new paths are not recorded (their events
/// then carry the backup's time), and are counted.
pub const MAX_OBSERVED: u64 = 100_000;
/// Observations not recorded because [`MAX_OBSERVED`] was reached.
const DROPPED_OBSERVED: &str = "dropped_observed";

/// The next batch sequence number.
const NEXT_SEQUENCE: &str = "next_sequence";
/// Events dropped because the spool was full.
const DROPPED_FULL: &str = "dropped_full";
/// Events dropped because the server refused their batch.
const DROPPED_REFUSED: &str = "dropped_refused";
/// Bytes of the batches held.
const BYTES: &str = "bytes";

/// Most events per batch.
pub const BATCH_EVENTS: usize = 1000;
/// The default byte limit: 256 MiB of encoded batches.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;

/// What the spool holds and has given up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpoolStats {
    /// Batches waiting to be sent.
    pub batches: u64,
    /// Their encoded size.
    pub bytes: u64,
    /// Events dropped, ever, because the spool was full (oldest first).
    pub dropped_full: u64,
    /// Events dropped, ever, because the server refused their batch.
    pub dropped_refused: u64,
    /// Changed paths the watcher saw that no backup has turned into events yet.
    pub observed: u64,
    /// Observations not recorded, ever, because [`MAX_OBSERVED`] paths were already waiting.
    pub dropped_observed: u64,
}

/// The spool.
pub struct Spool {
    db: Database,
    max_bytes: u64,
    device: Vec<u8>,
    agent_version: String,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

fn db_err(e: impl std::fmt::Display) -> AgentError {
    AgentError::Db(e.to_string())
}

fn get(meta: &impl ReadableTable<&'static str, u64>, key: &str) -> Result<u64, AgentError> {
    Ok(meta.get(key).map_err(db_err)?.map_or(0, |v| v.value()))
}

impl Spool {
    /// Opens (or creates) the spool at `path` for `device` (16 bytes), holding at most
    /// `max_bytes` of batches.
    ///
    /// # Errors
    /// [`AgentError::Db`].
    pub fn open(path: &Path, device: &[u8], max_bytes: u64) -> Result<Self, AgentError> {
        let db = Database::create(path).map_err(db_err)?;
        let tx = db.begin_write().map_err(db_err)?;
        tx.open_table(BATCHES).map_err(db_err)?;
        tx.open_table(META).map_err(db_err)?;
        tx.open_table(OBSERVED).map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(Self {
            db,
            max_bytes,
            device: device.to_vec(),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        })
    }

    /// Adds `events`, in batches of at most [`BATCH_EVENTS`], each with the next sequence
    /// number; durable when this returns. Drops the oldest batches if the spool would exceed
    /// its limit (a single batch larger than the limit is itself dropped and counted).
    ///
    /// # Errors
    /// [`AgentError::Db`].
    pub fn push(&self, events: Vec<FileEvent>) -> Result<(), AgentError> {
        if events.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write().map_err(db_err)?;
        self.push_in(&tx, events)?;
        tx.commit().map_err(db_err)
    }

    /// [`Spool::push`], and forgets the observations made up to `until` (Unix ns), in one
    /// transaction: the events that used them are queued exactly when they are gone.
    ///
    /// # Errors
    /// [`AgentError::Db`].
    pub fn push_observed(&self, events: Vec<FileEvent>, until: i64) -> Result<(), AgentError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        self.push_in(&tx, events)?;
        {
            let mut observed = tx.open_table(OBSERVED).map_err(db_err)?;
            observed
                .retain(|_, (first, _)| first > until)
                .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// Records that the watcher saw `paths` change (each with the time it was seen); a path
    /// already waiting keeps its first time and moves its last. Durable when this returns.
    ///
    /// # Errors
    /// [`AgentError::Db`].
    pub fn observe(&self, paths: &[(std::path::PathBuf, i64)]) -> Result<(), AgentError> {
        if paths.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut observed = tx.open_table(OBSERVED).map_err(db_err)?;
            let mut meta = tx.open_table(META).map_err(db_err)?;
            let mut held = observed.len().map_err(db_err)?;
            let mut dropped = 0;
            for (path, at) in paths {
                let key = path_bytes(path);
                let known = observed
                    .get(key.as_slice())
                    .map_err(db_err)?
                    .map(|v| v.value());
                match known {
                    Some((first, last)) => {
                        let span = (first.min(*at), last.max(*at));
                        if span != (first, last) {
                            observed.insert(key.as_slice(), span).map_err(db_err)?;
                        }
                    }
                    None if held >= MAX_OBSERVED => dropped += 1,
                    None => {
                        observed
                            .insert(key.as_slice(), (*at, *at))
                            .map_err(db_err)?;
                        held += 1;
                    }
                }
            }
            if dropped > 0 {
                let total = get(&meta, DROPPED_OBSERVED)? + dropped;
                meta.insert(DROPPED_OBSERVED, total).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    /// The observations waiting: path -> (first, last) time seen (Unix ns).
    ///
    /// # Errors
    /// [`AgentError::Db`].
    pub fn observed(
        &self,
    ) -> Result<std::collections::HashMap<std::path::PathBuf, (i64, i64)>, AgentError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let observed = tx.open_table(OBSERVED).map_err(db_err)?;
        observed
            .iter()
            .map_err(db_err)?
            .map(|row| {
                let (k, v) = row.map_err(db_err)?;
                Ok((path_from_bytes(k.value()), v.value()))
            })
            .collect()
    }

    fn push_in(
        &self,
        tx: &redb::WriteTransaction,
        events: Vec<FileEvent>,
    ) -> Result<(), AgentError> {
        {
            let mut batches = tx.open_table(BATCHES).map_err(db_err)?;
            let mut meta = tx.open_table(META).map_err(db_err)?;
            let mut events = events;
            while !events.is_empty() {
                let rest = events.split_off(events.len().min(BATCH_EVENTS));
                let count = events.len() as u64;
                let sequence = get(&meta, NEXT_SEQUENCE)?;
                let batch = EventBatch {
                    device_id: self.device.clone(),
                    agent_version: self.agent_version.clone(),
                    batch_sequence: sequence,
                    events,
                };
                let bytes = batch.encode_to_vec();
                meta.insert(NEXT_SEQUENCE, sequence + 1).map_err(db_err)?;
                let len = bytes.len() as u64;
                let mut held = get(&meta, BYTES)?;
                if len > self.max_bytes {
                    let dropped = get(&meta, DROPPED_FULL)? + count;
                    meta.insert(DROPPED_FULL, dropped).map_err(db_err)?;
                } else {
                    while held + len > self.max_bytes {
                        let Some((old_seq, old_bytes)) = batches
                            .first()
                            .map_err(db_err)?
                            .map(|(k, v)| (k.value(), v.value().to_vec()))
                        else {
                            break;
                        };
                        batches.remove(old_seq).map_err(db_err)?;
                        held = held.saturating_sub(old_bytes.len() as u64);
                        let lost = EventBatch::decode(old_bytes.as_slice())
                            .map_or(0, |b| b.events.len() as u64);
                        let dropped = get(&meta, DROPPED_FULL)? + lost;
                        meta.insert(DROPPED_FULL, dropped).map_err(db_err)?;
                    }
                    batches.insert(sequence, bytes.as_slice()).map_err(db_err)?;
                    held += len;
                }
                meta.insert(BYTES, held).map_err(db_err)?;
                events = rest;
            }
        }
        Ok(())
    }

    /// The oldest batch waiting, with its sequence number.
    ///
    /// # Errors
    /// [`AgentError::Db`].
    pub fn oldest(&self) -> Result<Option<(u64, Vec<u8>)>, AgentError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let batches = tx.open_table(BATCHES).map_err(db_err)?;
        Ok(batches
            .first()
            .map_err(db_err)?
            .map(|(k, v)| (k.value(), v.value().to_vec())))
    }

    /// Removes a batch: delivered (`refused` false) or refused by the server (its events are
    /// counted as dropped).
    ///
    /// # Errors
    /// [`AgentError::Db`].
    pub fn remove(&self, sequence: u64, refused: bool) -> Result<(), AgentError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut batches = tx.open_table(BATCHES).map_err(db_err)?;
            let mut meta = tx.open_table(META).map_err(db_err)?;
            let removed = batches
                .remove(sequence)
                .map_err(db_err)?
                .map(|v| v.value().to_vec());
            if let Some(bytes) = removed {
                let held = get(&meta, BYTES)?.saturating_sub(bytes.len() as u64);
                meta.insert(BYTES, held).map_err(db_err)?;
                if refused {
                    let lost =
                        EventBatch::decode(bytes.as_slice()).map_or(0, |b| b.events.len() as u64);
                    let dropped = get(&meta, DROPPED_REFUSED)? + lost;
                    meta.insert(DROPPED_REFUSED, dropped).map_err(db_err)?;
                }
            }
        }
        tx.commit().map_err(db_err)
    }

    /// What the spool holds and has dropped.
    ///
    /// # Errors
    /// [`AgentError::Db`].
    pub fn stats(&self) -> Result<SpoolStats, AgentError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let batches = tx.open_table(BATCHES).map_err(db_err)?;
        let meta = tx.open_table(META).map_err(db_err)?;
        let observed = tx.open_table(OBSERVED).map_err(db_err)?;
        Ok(SpoolStats {
            batches: batches.len().map_err(db_err)?,
            bytes: get(&meta, BYTES)?,
            dropped_full: get(&meta, DROPPED_FULL)?,
            dropped_refused: get(&meta, DROPPED_REFUSED)?,
            observed: observed.len().map_err(db_err)?,
            dropped_observed: get(&meta, DROPPED_OBSERVED)?,
        })
    }
}

#[cfg(unix)]
fn path_bytes(path: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().to_vec()
}

#[cfg(not(unix))]
fn path_bytes(path: &Path) -> Vec<u8> {
    path.to_string_lossy().into_owned().into_bytes()
}

#[cfg(unix)]
fn path_from_bytes(bytes: &[u8]) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(bytes).into()
}

#[cfg(not(unix))]
fn path_from_bytes(bytes: &[u8]) -> std::path::PathBuf {
    String::from_utf8_lossy(bytes).into_owned().into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn events(n: usize, path: &str) -> Vec<FileEvent> {
        (0..n)
            .map(|i| FileEvent {
                event_id: vec![u8::try_from(i % 256).unwrap(); 16],
                observed_unix_nanos: 1_800_000_000_000_000_000,
                activity: 1,
                file: Some(cairn_events::v1::File {
                    path: format!("{path}/{i}"),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn batches_survive_reopening_in_order_with_fresh_sequences() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.redb");
        {
            let spool = Spool::open(&path, &[7; 16], DEFAULT_MAX_BYTES).unwrap();
            spool.push(events(BATCH_EVENTS + 1, "/a")).unwrap();
        }
        let spool = Spool::open(&path, &[7; 16], DEFAULT_MAX_BYTES).unwrap();
        assert_eq!(spool.stats().unwrap().batches, 2);
        let (seq, bytes) = spool.oldest().unwrap().unwrap();
        assert_eq!(seq, 0);
        let batch = EventBatch::decode(bytes.as_slice()).unwrap();
        assert_eq!(batch.events.len(), BATCH_EVENTS);
        assert_eq!(batch.device_id, vec![7; 16]);
        spool.remove(seq, false).unwrap();
        spool.push(events(1, "/b")).unwrap();
        let seqs: Vec<u64> = std::iter::from_fn(|| {
            let (s, _) = spool.oldest().unwrap()?;
            spool.remove(s, false).unwrap();
            Some(s)
        })
        .collect();
        // Sequence numbers are never reused, even after batches are removed.
        assert_eq!(seqs, [1, 2]);
        let stats = spool.stats().unwrap();
        assert_eq!((stats.batches, stats.bytes), (0, 0));
        assert_eq!((stats.dropped_full, stats.dropped_refused), (0, 0));
    }

    #[test]
    fn observations_keep_their_first_time_survive_reopening_and_clear_with_their_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.redb");
        {
            let spool = Spool::open(&path, &[7; 16], DEFAULT_MAX_BYTES).unwrap();
            spool
                .observe(&[("/a".into(), 20), ("/b".into(), 30)])
                .unwrap();
            // Seen again later: the first time stays and the last moves; seen earlier (clock
            // order): the first moves back.
            spool
                .observe(&[("/a".into(), 25), ("/b".into(), 10)])
                .unwrap();
        }
        let spool = Spool::open(&path, &[7; 16], DEFAULT_MAX_BYTES).unwrap();
        let seen = spool.observed().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[Path::new("/a")], (20, 25));
        assert_eq!(seen[Path::new("/b")], (10, 30));
        spool.observe(&[("/c".into(), 50)]).unwrap();
        // A backup that started at 40 covered /a and /b, not /c.
        spool.push_observed(events(3, "/e"), 40).unwrap();
        let stats = spool.stats().unwrap();
        assert_eq!((stats.batches, stats.observed), (1, 1));
        assert!(spool.observed().unwrap().contains_key(Path::new("/c")));
    }

    #[test]
    fn a_full_spool_drops_the_oldest_batches_and_counts_their_events() {
        let dir = tempfile::tempdir().unwrap();
        let one = EventBatch {
            device_id: vec![1; 16],
            agent_version: env!("CARGO_PKG_VERSION").into(),
            batch_sequence: 0,
            events: events(10, "/x"),
        }
        .encode_to_vec()
        .len() as u64;
        // Room for two batches of ten events, not three.
        let spool = Spool::open(&dir.path().join("s.redb"), &[1; 16], one * 2 + one / 2).unwrap();
        for p in ["/x", "/y", "/z"] {
            spool.push(events(10, p)).unwrap();
        }
        let stats = spool.stats().unwrap();
        assert_eq!(stats.batches, 2);
        assert_eq!(stats.dropped_full, 10);
        assert!(stats.bytes <= one * 2 + one / 2);
        // The oldest went: what is left starts with the second batch.
        let (seq, bytes) = spool.oldest().unwrap().unwrap();
        assert_eq!(seq, 1);
        let first = EventBatch::decode(bytes.as_slice()).unwrap();
        assert!(
            first.events[0]
                .file
                .as_ref()
                .unwrap()
                .path
                .starts_with("/y")
        );
        // A refused batch is dropped and counted on its own counter.
        spool.remove(seq, true).unwrap();
        let stats = spool.stats().unwrap();
        assert_eq!((stats.batches, stats.dropped_refused), (1, 10));
        // A batch larger than the whole spool is counted, not stored.
        spool.push(events(100, "/big")).unwrap();
        let stats = spool.stats().unwrap();
        assert_eq!((stats.batches, stats.dropped_full), (1, 110));
    }
}
