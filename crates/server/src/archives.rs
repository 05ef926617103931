//! The storage service: one append-only `cairn-archive` log per user, holding sealed blocks and
//! snapshot records exactly as they arrived. The server checks framing (each block's public
//! header, see `cairn-seal`), that a block's header names the id it is stored under, and that
//! an id is never given a second, different body (B-16); it never sees content.
//!
//! Records use the backup engine's kinds (1 block, 2 snapshot), so a user's server archive has
//! the same layout as a local repository.
//!
//! Every method blocks (fsync, object-store calls): call it from `spawn_blocking`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use cairn_archive::{Archive, ArchiveError, Config};
use cairn_seal::BlockId;
use cairn_token::{TenantId, UserId};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use tokio::runtime::Handle;

use crate::db::{Db, DbError};
use crate::segments::{ObjectSegments, Segments};

/// Record kind of a sealed data block.
pub const KIND_BLOCK: u8 = 1;
/// Record kind of a sealed snapshot record.
pub const KIND_SNAPSHOT: u8 = 2;
/// Record kind of a snapshot's reference list (plaintext, `cairn_wire::refs`), under
/// [`refs_key`] of the snapshot's id.
pub const KIND_REFS: u8 = 3;
/// Record kind of a forget record (`crate::prune`): which snapshots a prune forgot, and when.
pub const KIND_FORGET: u8 = 4;

/// The key a snapshot's reference list is stored under: `BLAKE3("cairn refs v1" ‖ id)`, so
/// that it never collides with the snapshot record (keyed by the id itself).
#[must_use]
pub fn refs_key(snapshot: &BlockId) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"cairn refs v1");
    h.update(snapshot.as_bytes());
    *h.finalize().as_bytes()
}

/// A block id from its 64 hex digits (how the database and the API write ids); `None` for
/// anything else.
#[must_use]
pub(crate) fn block_id_from_hex(h: &str) -> Option<BlockId> {
    let mut id = [0u8; 32];
    hex::decode_to_slice(h, &mut id).ok()?;
    Some(BlockId::from_bytes(id))
}

/// Why a snapshot's reference list was refused (`409`): the agent sends it again complete,
/// or uploads the blocks again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefsRefusal {
    /// The list's base has no list here, its chain of deltas is too long, or the list does not
    /// apply to it.
    #[error("the reference list's base is unknown or does not match")]
    Base,
    /// Ids it adds are not stored here.
    #[error("{} referenced blocks are not stored", .0.len())]
    Missing(Vec<BlockId>),
    /// Ids it adds were pruned (elided): upload them again.
    #[error("{} referenced blocks were pruned", .0.len())]
    Pruned(Vec<BlockId>),
}

/// What the storage service refuses or fails with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An id already holds different bytes (or a record of the other kind).
    #[error("id {0} already holds a different record")]
    Conflict(BlockId),
    /// A requested id is not stored.
    #[error("not found")]
    NotFound,
    /// The tenant's quota would be passed.
    #[error("quota exceeded")]
    Quota,
    /// The upload is not a well-framed batch of sealed blocks (`docs/format/wire.md`).
    #[error("malformed upload")]
    Malformed,
    /// The log failed.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// Opening segment storage failed.
    #[error("segment storage: {0}")]
    Io(#[from] std::io::Error),
    /// Another server instance holds the archive's lease past the wait.
    #[error("the archive is busy on another server instance")]
    Busy,
    /// The metadata database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A lock was poisoned by a panic.
    #[error("archive lock poisoned")]
    Poisoned,
    /// A snapshot's reference list was refused.
    #[error(transparent)]
    Refs(#[from] RefsRefusal),
    /// A stored record that should decode does not (a reference or forget record).
    #[error("stored record does not decode: {0}")]
    Stored(&'static str),
}

/// The result of an upload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stored {
    /// Records appended.
    pub stored: usize,
    /// Records already present with identical bytes (nothing done).
    pub already_present: usize,
    /// Bytes appended (charged to the tenant's quota).
    pub bytes: u64,
}

type UserKey = (TenantId, UserId);

pub(crate) type Log = Arc<Mutex<Archive<Segments>>>;

/// One user's archive once opened, and the lease epoch it was opened under (shared mode).
struct Opened {
    log: Log,
    epoch: i64,
}

/// Each user has one slot; its lock is held while the archive opens (so two first requests
/// never open and recover the same log side by side: a second opener's recovery could cut the
/// tail the first one's upload was appending) and while the lease is taken or given back.
#[derive(Default)]
struct SlotState {
    opened: Option<Opened>,
    /// Requests of this instance using the archive now (shared mode gives the lease back when
    /// the last one ends).
    in_flight: usize,
    /// Shared mode: the epoch of the lease this instance holds, and when it last renewed it.
    lease: Option<(i64, std::time::Instant)>,
}

/// While requests are in flight, a lease renewed this recently is not renewed again (it has
/// most of [`LEASE_TTL_MS`] left; the fence checks it at every commit anyway).
const LEASE_RENEW_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

type Slot = Arc<Mutex<SlotState>>;

/// How long a lease lasts without renewal: the longest another instance waits for a holder
/// that died.
pub const LEASE_TTL_MS: i64 = 10_000;

/// How long a request waits for another instance's lease before giving up
/// ([`StoreError::Busy`]).
const LEASE_WAIT_MS: u64 = 2 * LEASE_TTL_MS as u64 + 5_000;

/// Several instances sharing one database and one object store.
#[derive(Debug)]
struct Shared {
    /// This instance's lease holder name (random, new at each start).
    holder: String,
    /// Woken when a lease is given back: by this instance, or by any (PostgreSQL's
    /// notifications, heard by `_listener`).
    released: Arc<tokio::sync::Notify>,
    /// Requests of this instance waiting for another holder's lease.
    waiting: std::sync::atomic::AtomicUsize,
    /// The task that hears other instances' releases; stopped with the archives.
    _listener: AbortOnDrop,
}

/// A task stopped when this is dropped.
#[derive(Debug)]
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// A request's use of an archive: in shared mode, the lease is given back when the last of
/// this instance's requests ends.
pub(crate) struct InFlight<'a> {
    archives: &'a Archives,
    slot: Slot,
    key: UserKey,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let Ok(mut slot) = self.slot.lock() else {
            return;
        };
        slot.in_flight = slot.in_flight.saturating_sub(1);
        if slot.in_flight == 0 {
            let (tenant, user) = &self.key;
            self.archives.release_lease(&mut slot, tenant, user);
        }
    }
}

fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Every user's archive, opened on first use.
pub struct Archives {
    pub(crate) db: Db,
    staging: PathBuf,
    store: Arc<dyn ObjectStore>,
    /// The same store when it is a local file system (sealing links instead of copying).
    local: Option<Arc<LocalFileSystem>>,
    pub(crate) runtime: Handle,
    segment_target: u64,
    open: Mutex<HashMap<UserKey, Slot>>,
    /// Set when instances share the database and the store: archives are leased, their
    /// active segments live in the store as parts.
    shared: Option<Shared>,
    /// Acknowledged data records found missing on opening, since start.
    lost_records: std::sync::atomic::AtomicU64,
    /// Openings that found acknowledged history shortened or replaced, since start.
    damaged_openings: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Archives {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archives")
            .field("staging", &self.staging)
            .field("store", &self.store.to_string())
            .finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, StoreError> {
    m.lock().map_err(|_| StoreError::Poisoned)
}

impl Archives {
    /// Archives staged under `staging`, sealed segments in `store` under
    /// `tenants/<tenant>/users/<user>/`.
    pub fn new(db: Db, staging: PathBuf, store: Arc<dyn ObjectStore>, runtime: Handle) -> Self {
        Self {
            db,
            staging,
            store,
            runtime,
            local: None,
            segment_target: cairn_archive::DEFAULT_SEGMENT_TARGET,
            open: Mutex::default(),
            shared: None,
            lost_records: std::sync::atomic::AtomicU64::new(0),
            damaged_openings: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Archives kept entirely in `store`, shared with other instances over the same `db`: each
    /// archive is leased to one instance at a time, and its active segment is written to the
    /// store as parts (`crate::parts`), so that any instance can take it over. On PostgreSQL it
    /// is listening for leases given back when it returns, so no release after that is missed
    /// (if the listening connection cannot be made, waiters wake at lease expiries).
    ///
    /// # Errors
    /// [`StoreError::Io`] if no random holder name can be drawn.
    pub async fn shared(
        db: Db,
        store: Arc<dyn ObjectStore>,
        runtime: Handle,
    ) -> Result<Self, StoreError> {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| std::io::Error::other(e.to_string()))?;
        let released = Arc::new(tokio::sync::Notify::new());
        let releases = match db.lease_releases().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "not hearing other instances' lease releases; waiting for expiries");
                None
            }
        };
        // SQLite (no listener): waiters wake at the lease's expiry or this process's releases.
        let listener = releases.map(|mut releases| {
            let released = Arc::clone(&released);
            runtime.spawn(async move {
                loop {
                    match releases.next().await {
                        Ok(()) => released.notify_waiters(),
                        Err(e) => {
                            tracing::warn!(error = %e, "lost the lease-release listener; waiting for expiries");
                            return;
                        }
                    }
                }
            })
        });
        let mut this = Self::new(db, PathBuf::new(), store, runtime);
        this.shared = Some(Shared {
            holder: hex::encode(id),
            released,
            waiting: std::sync::atomic::AtomicUsize::new(0),
            _listener: AbortOnDrop(listener),
        });
        Ok(this)
    }

    /// This instance's lease holder name, in shared mode.
    #[must_use]
    pub fn holder(&self) -> Option<&str> {
        self.shared.as_ref().map(|s| s.holder.as_str())
    }

    /// [`Archives::new`] over a local file-system store: sealed segments are published by hard
    /// link when staging and store share a file system (written once, not copied).
    pub fn new_local(
        db: Db,
        staging: PathBuf,
        store: Arc<LocalFileSystem>,
        runtime: Handle,
    ) -> Self {
        let mut this = Self::new(
            db,
            staging,
            Arc::clone(&store) as Arc<dyn ObjectStore>,
            runtime,
        );
        this.local = Some(store);
        this
    }

    /// Seals segments at about `bytes` (clamped to the archive's bounds).
    #[must_use]
    pub fn with_segment_target(mut self, bytes: u64) -> Self {
        self.segment_target = bytes.clamp(
            cairn_archive::MIN_SEGMENT_TARGET,
            cairn_archive::MAX_SEGMENT_TARGET,
        );
        self
    }

    /// The user's archive, opened if needed, and this request's hold on it (in shared mode,
    /// the lease: taken or renewed here, given back when the instance's last request ends).
    pub(crate) fn archive(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<(Log, InFlight<'_>), StoreError> {
        let key = (tenant.clone(), user.clone());
        let slot = Arc::clone(lock(&self.open)?.entry(key.clone()).or_default());
        let mut state = lock(&slot)?;
        let epoch = match &self.shared {
            None => 0,
            Some(_) if state.in_flight > 0 => match state.lease {
                Some((epoch, renewed)) if renewed.elapsed() < LEASE_RENEW_AFTER => epoch,
                _ => self.take_lease(tenant, user)?,
            },
            Some(_) => self.take_lease(tenant, user)?,
        };
        if self.shared.is_some() {
            state.lease = Some((epoch, std::time::Instant::now()));
        }
        let log = match &state.opened {
            Some(opened) if opened.epoch == epoch => Arc::clone(&opened.log),
            // Not open yet; or another instance held the archive since this one opened it, so
            // what is in memory is stale: open it (again) from the store.
            _ => {
                state.opened = None;
                match self.open_archive(tenant, user, epoch) {
                    Ok(log) => {
                        state.opened = Some(Opened {
                            log: Arc::clone(&log),
                            epoch,
                        });
                        log
                    }
                    Err(e) => {
                        if state.in_flight == 0 {
                            self.release_lease(&mut state, tenant, user);
                        }
                        return Err(e);
                    }
                }
            }
        };
        state.in_flight += 1;
        drop(state);
        // Created only now: its drop takes the slot's lock, which must not be held then.
        Ok((
            log,
            InFlight {
                archives: self,
                slot,
                key,
            },
        ))
    }

    /// Gives the lease back (shared mode; the slot's lock held, no request in flight).
    fn release_lease(&self, state: &mut SlotState, tenant: &TenantId, user: &UserId) {
        let (Some(shared), Some((epoch, _))) = (&self.shared, state.lease.take()) else {
            return;
        };
        if let Err(e) =
            self.runtime
                .block_on(self.db.release_lease(tenant, user, &shared.holder, epoch))
        {
            // It expires by itself.
            tracing::warn!(%tenant, %user, error = %e, "giving back an archive lease failed");
        }
        shared.released.notify_waiters();
    }

    /// Requests of this instance waiting for another instance's lease (shared mode), for
    /// metrics and tests.
    #[must_use]
    pub fn waiting_for_lease(&self) -> usize {
        self.shared
            .as_ref()
            .map_or(0, |s| s.waiting.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// Takes the archive's lease for this instance, waiting for another holder's to end or
    /// expire; returns its epoch. A wait ends when a lease is given back (by this instance, or
    /// by any on PostgreSQL: `Db::lease_releases`) or when the holder's lease expires, not on a
    /// timer of its own.
    fn take_lease(&self, tenant: &TenantId, user: &UserId) -> Result<i64, StoreError> {
        use std::sync::atomic::Ordering;
        let Some(shared) = &self.shared else {
            return Err(StoreError::Poisoned);
        };
        let holder = shared.holder.as_str();
        let give_up = std::time::Instant::now() + std::time::Duration::from_millis(LEASE_WAIT_MS);
        self.runtime.block_on(async {
            let mut waiting = false;
            let result = loop {
                // Listening before asking: a release between the two is not missed.
                let released = shared.released.notified();
                tokio::pin!(released);
                released.as_mut().enable();
                let now = now_unix_ms();
                match self
                    .db
                    .take_lease(tenant, user, holder, now, now.saturating_add(LEASE_TTL_MS))
                    .await
                {
                    Ok(Some(epoch)) => break Ok(epoch),
                    Ok(None) => {}
                    Err(e) => break Err(StoreError::from(e)),
                }
                let expiry = match self.db.lease_expiry(tenant, user).await {
                    Ok(expiry) => expiry.unwrap_or(now),
                    Err(e) => break Err(StoreError::from(e)),
                };
                let left = give_up.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break Err(StoreError::Busy);
                }
                // Just past the expiry (the row says when it ends), or the end of the wait.
                let until_expiry = std::time::Duration::from_millis(
                    u64::try_from(expiry.saturating_sub(now_unix_ms()).saturating_add(1))
                        .unwrap_or(0),
                );
                if !waiting {
                    waiting = true;
                    shared.waiting.fetch_add(1, Ordering::SeqCst);
                }
                tokio::select! {
                    () = released => {}
                    () = tokio::time::sleep(until_expiry.min(left)) => {}
                }
            };
            if waiting {
                shared.waiting.fetch_sub(1, Ordering::SeqCst);
            }
            result
        })
    }

    fn open_archive(
        &self,
        tenant: &TenantId,
        user: &UserId,
        epoch: i64,
    ) -> Result<Log, StoreError> {
        // Ids are canonical (`[a-z0-9-]{1,63}`, checked by the router), so they are safe as
        // path and object-name segments.
        let archive_id = self.runtime.block_on(self.db.archive_id(tenant, user))?;
        let prefix = ObjectPath::from(format!("tenants/{tenant}/users/{user}"));
        let segments = match &self.shared {
            Some(shared) => {
                let (db, runtime) = (self.db.clone(), self.runtime.clone());
                let (t, u, holder) = (tenant.to_owned(), user.to_owned(), shared.holder.clone());
                let fence: crate::parts::Fence =
                    Arc::new(move || match runtime.block_on(db.lease(&t, &u)) {
                        Ok(Some((h, e))) if h == holder && e == epoch => Ok(()),
                        Ok(_) => Err(std::io::Error::other(
                            "the archive's lease passed to another instance",
                        )),
                        Err(e) => Err(std::io::Error::other(e.to_string())),
                    });
                Segments::Shared(crate::parts::PartSegments::open(
                    Arc::clone(&self.store),
                    prefix,
                    self.runtime.clone(),
                    fence,
                )?)
            }
            None => {
                let mut segments = ObjectSegments::open(
                    &self.staging.join(tenant.as_str()).join(user.as_str()),
                    Arc::clone(&self.store),
                    prefix,
                    self.runtime.clone(),
                )?;
                if let Some(local) = &self.local {
                    segments = segments.with_local(Arc::clone(local));
                }
                Segments::Staged(segments)
            }
        };
        let config = Config::new(archive_id)
            .with_index_cache(true)
            .with_segment_target(self.segment_target)?;
        let (log, recovery) = Archive::open(segments, config)?;
        if recovery != cairn_archive::Recovery::default() {
            // A tail written but never committed (so never acknowledged) is the normal trace of
            // a crash; what was acknowledged is checked against the witness next.
            tracing::warn!(
                %tenant,
                %user,
                truncated_bytes = recovery.truncated_bytes,
                uncommitted_records = recovery.dropped_records,
                rescanned_segments = recovery.rescanned_segments.len(),
                damaged_headers = recovery.damaged_headers.len(),
                "archive recovered on opening"
            );
        }
        self.check_witness(tenant, user, &log.last_commit(), &recovery)?;
        // Opening: make the user's charged total what the log holds (a crash between a
        // charge and its append leaves a charge for nothing). Under the slot's lock (and in
        // shared mode the lease), so that no upload to this archive runs meanwhile.
        let mut actual: u64 = 0;
        for kind in [KIND_BLOCK, KIND_SNAPSHOT] {
            actual += log
                .records_of_kind(kind)?
                .iter()
                .map(|(_, loc)| u64::from(loc.len))
                .sum::<u64>();
        }
        let actual = i64::try_from(actual).map_err(|_| StoreError::Quota)?;
        let delta = self
            .runtime
            .block_on(self.db.reconcile(tenant, user, actual))?;
        if delta != 0 {
            tracing::warn!(
                %tenant,
                %user,
                delta,
                "stored total corrected to what the archive holds"
            );
        }
        Ok(Arc::new(Mutex::new(log)))
    }

    /// Compares what an archive holds on opening with what the server acknowledged of it
    /// (`Db::witness`): fewer data records, or as many under another chain head, is a loss of
    /// acknowledged data. It is never passed over: logged as an error, counted
    /// ([`Archives::lost_records`]), audited, and the archive marked damaged in the database
    /// (the archive view shows it) until an operator clears the mark. The archive is still
    /// served, so that what is left can be restored and new backups made.
    fn check_witness(
        &self,
        tenant: &TenantId,
        user: &UserId,
        now: &cairn_archive::Commit,
        recovery: &cairn_archive::Recovery,
    ) -> Result<(), StoreError> {
        let Some((acked, acked_chain)) = self.runtime.block_on(self.db.witness(tenant, user))?
        else {
            return Ok(());
        };
        let held = i64::try_from(now.data_records).map_err(|_| StoreError::Quota)?;
        let chain = hex::encode(now.chain_head);
        let detail = if held < acked {
            format!(
                "the archive opened with {held} data records where {acked} were acknowledged \
                 ({} lost; recovery cut {} bytes)",
                acked - held,
                recovery.truncated_bytes
            )
        } else if held == acked && acked_chain.as_deref().is_some_and(|c| c != chain) {
            format!(
                "the archive opened with the {held} data records acknowledged, under another \
                 chain head: its history was replaced"
            )
        } else {
            return Ok(());
        };
        let lost = acked.saturating_sub(held);
        self.lost_records.fetch_add(
            u64::try_from(lost).unwrap_or(0),
            std::sync::atomic::Ordering::Relaxed,
        );
        self.damaged_openings
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::error!(
            %tenant,
            %user,
            acknowledged = acked,
            held,
            lost,
            "archive lost acknowledged data: {detail}"
        );
        self.runtime.block_on(async {
            self.db
                .mark_damaged(tenant, user, lost, &detail, held, &chain)
                .await?;
            self.db
                .audit(tenant, "server", "archive.damaged", user.as_str(), &detail)
                .await
        })?;
        Ok(())
    }

    /// Acknowledged data records found missing since this process started, over every archive
    /// (a metric; see `Archives::open_archive`).
    #[must_use]
    pub fn lost_records(&self) -> u64 {
        self.lost_records.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Openings that found an archive's acknowledged history shortened or replaced since this
    /// process started (a metric).
    #[must_use]
    pub fn damaged_openings(&self) -> u64 {
        self.damaged_openings
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Which of `ids` the user's archive lacks, in the order asked: absent, pruned (elided),
    /// or marked by prune as unreferenced, which an uploader must not rely on (it uploads the
    /// block again and the upload clears the mark, `docs/design/0009-retention-and-prune.md`
    /// §6).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn missing(
        &self,
        tenant: &TenantId,
        user: &UserId,
        ids: &[BlockId],
    ) -> Result<Vec<BlockId>, StoreError> {
        let (archive, _in_flight) = self.archive(tenant, user)?;
        let log = lock(&archive)?;
        let marks = self.marked(tenant, user)?;
        let mut out = Vec::new();
        for id in ids {
            let usable = log
                .locate(id.as_bytes())?
                .is_some_and(|loc| !loc.elided && !marks.contains(id));
            if !usable {
                out.push(*id);
            }
        }
        Ok(out)
    }

    /// The archive's marked block ids (one cheap query when there are none).
    pub(crate) fn marked(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<HashSet<BlockId>, StoreError> {
        if !self
            .runtime
            .block_on(self.db.has_prune_marks(tenant, user))?
        {
            return Ok(HashSet::new());
        }
        let marks = self.runtime.block_on(self.db.prune_marks(tenant, user))?;
        Ok(marks.keys().filter_map(|h| block_id_from_hex(h)).collect())
    }

    /// Appends records of `kind` (all or nothing): an id already holding identical bytes is
    /// skipped, one holding different bytes fails the whole call with [`StoreError::Conflict`]
    /// before anything is written, unless prune marked or elided it (then the new bytes are
    /// stored, and the mark cleared); the new bytes are charged to the tenant's quota first
    /// ([`StoreError::Quota`] leaves everything as it was). Durable when it returns.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn put(
        &self,
        tenant: &TenantId,
        user: &UserId,
        kind: u8,
        records: &[(BlockId, &[u8])],
    ) -> Result<Stored, StoreError> {
        let (archive, _in_flight) = self.archive(tenant, user)?;
        let mut log = lock(&archive)?;
        let marks = self.marked(tenant, user)?;
        let mut result = Stored::default();
        let mut fresh: Vec<(u8, [u8; 32], &[u8])> = Vec::new();
        let mut unmarked = Vec::new();
        let mut in_batch: HashMap<BlockId, &[u8]> = HashMap::new();
        for &(id, bytes) in records {
            if let Some(earlier) = in_batch.get(&id) {
                if *earlier != bytes {
                    return Err(StoreError::Conflict(id));
                }
                result.already_present += 1;
                continue;
            }
            in_batch.insert(id, bytes);
            match log.locate(id.as_bytes())? {
                Some(loc) if loc.kind == kind && (loc.elided || marks.contains(&id)) => {
                    // Prune gave it up (or may): this upload makes it live again.
                    if marks.contains(&id) {
                        unmarked.push(hex::encode(id.as_bytes()));
                    }
                    fresh.push((kind, *id.as_bytes(), bytes));
                }
                Some(loc) => {
                    if loc.kind != kind || log.read_committed(&loc)? != bytes {
                        return Err(StoreError::Conflict(id));
                    }
                    result.already_present += 1;
                }
                None => fresh.push((kind, *id.as_bytes(), bytes)),
            }
        }
        if fresh.is_empty() {
            return Ok(result);
        }
        result.stored = fresh.len();
        result.bytes = self.append_committed(tenant, user, &mut log, &fresh)?;
        if !unmarked.is_empty() {
            self.runtime
                .block_on(self.db.clear_prune_marks(tenant, user, &unmarked))?;
        }
        Ok(result)
    }

    /// Appends `records` (kind, key, payload) and commits them, charged to the quota first;
    /// the witness moves before this returns. Returns the bytes charged.
    pub(crate) fn append_committed(
        &self,
        tenant: &TenantId,
        user: &UserId,
        log: &mut Archive<Segments>,
        records: &[(u8, [u8; 32], &[u8])],
    ) -> Result<u64, StoreError> {
        let bytes: u64 = records.iter().map(|(_, _, b)| b.len() as u64).sum();
        let charge = i64::try_from(bytes).map_err(|_| StoreError::Quota)?;
        if !self
            .runtime
            .block_on(self.db.reserve(tenant, user, charge))?
        {
            return Err(StoreError::Quota);
        }
        let appended = (|| {
            for (kind, key, b) in records {
                log.append(*kind, key, b)?;
            }
            log.commit()
        })();
        let commit = match appended {
            Ok(commit) => commit,
            Err(e) => {
                // Nothing acknowledged: give the reservation back (the handle is poisoned and the
                // uncommitted tail is cut at the next open).
                let _ = self.runtime.block_on(self.db.release(tenant, user, charge));
                // The next request reopens it (recovery cuts the uncommitted tail); this handle is
                // poisoned and writes nothing more.
                let slot = lock(&self.open)?
                    .get(&(tenant.clone(), user.clone()))
                    .cloned();
                if let Some(slot) = slot {
                    lock(&slot)?.opened = None;
                }
                return Err(e.into());
            }
        };
        // The witness moves before the answer acknowledges the commit: an opening that finds
        // less than this lost acknowledged data (`check_witness`).
        let count = i64::try_from(commit.data_records).map_err(|_| StoreError::Quota)?;
        self.runtime.block_on(self.db.acknowledge(
            tenant,
            user,
            count,
            &hex::encode(commit.chain_head),
        ))?;
        Ok(bytes)
    }

    /// The records of `kind` under `ids`, in order; [`StoreError::NotFound`] if any is absent.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn get(
        &self,
        tenant: &TenantId,
        user: &UserId,
        kind: u8,
        ids: &[BlockId],
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let (archive, _in_flight) = self.archive(tenant, user)?;
        let log = lock(&archive)?;
        ids.iter()
            .map(|id| match log.locate(id.as_bytes())? {
                // Pruned: gone, as far as a reader can tell.
                Some(loc) if loc.kind == kind && !loc.elided => Ok(log.read_committed(&loc)?),
                _ => Err(StoreError::NotFound),
            })
            .collect()
    }

    /// The ids of every snapshot record, from the indexes alone.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn snapshots(&self, tenant: &TenantId, user: &UserId) -> Result<Vec<BlockId>, StoreError> {
        let (archive, _in_flight) = self.archive(tenant, user)?;
        let log = lock(&archive)?;
        let mut seen = HashSet::new();
        Ok(log
            .records_of_kind(KIND_SNAPSHOT)?
            .into_iter()
            .filter(|(_, loc)| !loc.elided)
            .map(|(key, _)| BlockId::from_bytes(key))
            .filter(|id| seen.insert(*id))
            .collect())
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]
mod tests {
    use super::*;

    /// The tenant these tests use.
    fn t() -> cairn_token::TenantId {
        cairn_token::TenantId::new("t").unwrap()
    }

    /// Its user.
    fn u() -> cairn_token::UserId {
        cairn_token::UserId::new("u").unwrap()
    }
    use object_store::ObjectStoreExt;
    use object_store::local::LocalFileSystem;

    /// Puts `blocks` into user `u`'s archive, `per` at a time; every block is new, so stored.
    fn put_in_batches(archives: &Archives, blocks: &[(BlockId, Vec<u8>)], per: usize) {
        for chunk in blocks.chunks(per) {
            let refs: Vec<(BlockId, &[u8])> = chunk.iter().map(|(i, b)| (*i, &b[..])).collect();
            let stored = archives.put(&t(), &u(), KIND_BLOCK, &refs).unwrap();
            assert_eq!(stored.stored, chunk.len());
        }
    }

    /// Every one of `blocks` reads back from user `u`'s archive as it was put.
    fn assert_all_there(archives: &Archives, blocks: &[(BlockId, Vec<u8>)]) {
        let ids: Vec<BlockId> = blocks.iter().map(|(i, _)| *i).collect();
        let got = archives.get(&t(), &u(), KIND_BLOCK, &ids).unwrap();
        assert_eq!(got.len(), blocks.len());
        for ((_, want), got) in blocks.iter().zip(&got) {
            assert_eq!(want, got);
        }
    }

    fn sealed(i: u32) -> (BlockId, Vec<u8>) {
        let root = cairn_keys::ArchiveKey::from_bytes([3; 32]);
        let sealer = cairn_seal::Sealer::new(
            &root,
            cairn_seal::ArchiveId::from_bytes([1; 16]),
            cairn_seal::SealConfig::default(),
        );
        // Incompressible-ish content so that segments fill.
        let plain: Vec<u8> = (0..70_000u32)
            .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i) >> 13) as u8)
            .collect();
        let b = sealer.seal(cairn_seal::BlockKind::DATA, &plain).unwrap();
        (b.id(), b.into_bytes())
    }

    /// A runtime, a data folder with `segments/`, and a database holding tenant `t` and its
    /// user `u`.
    fn fixture() -> (tokio::runtime::Runtime, tempfile::TempDir, Db) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = rt
            .block_on(Db::open_sqlite(&dir.path().join("m.sqlite")))
            .unwrap();
        rt.block_on(db.add_tenant(&t(), 1 << 30)).unwrap();
        rt.block_on(db.add_user(&t(), &u(), cairn_token::Role::User))
            .unwrap();
        std::fs::create_dir_all(dir.path().join("segments")).unwrap();
        (rt, dir, db)
    }

    /// Log lines written while `f` runs on this thread, at every level.
    fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let out = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        (out, text)
    }

    /// Issue 27, item 1: an opening that finds fewer data records than were acknowledged
    /// (the active segment cut back past a commit the server answered) is an error: logged at
    /// ERROR, counted, audited and marked on the archive, never one WARN line. A cut of what
    /// was never committed (a crash mid-write) is only a warning and marks nothing.
    #[test]
    fn a_cut_of_acknowledged_records_is_an_error_and_marks_the_archive() {
        let (rt, dir, db) = fixture();
        let open = || {
            Archives::new(
                db.clone(),
                dir.path().join("staging"),
                Arc::new(LocalFileSystem::new_with_prefix(dir.path().join("segments")).unwrap()),
                rt.handle().clone(),
            )
        };
        let blocks: Vec<(BlockId, Vec<u8>)> = (0..4).map(sealed).collect();
        let archives = open();
        put_in_batches(&archives, &blocks, 1);
        drop(archives);
        let active = dir
            .path()
            .join("staging/t/u")
            .join(cairn_archive::segment_name(0, true));
        let committed = std::fs::read(&active).unwrap();
        // Garbage after the last commit (never acknowledged): a warning, no damage.
        let mut torn = committed.clone();
        torn.extend_from_slice(&[0xAB; 100]);
        std::fs::write(&active, &torn).unwrap();
        let archives = open();
        let ((), log) = logged(|| assert_all_there(&archives, &blocks));
        assert!(
            log.contains("WARN") && log.contains("archive recovered"),
            "{log}"
        );
        assert!(!log.contains("ERROR"), "{log}");
        assert_eq!(rt.block_on(db.damage(&t(), &u())).unwrap(), None);
        assert_eq!(archives.lost_records(), 0);
        drop(archives);
        // The last acknowledged commit's record cut off: one block lost.
        let record = 48 + blocks[3].1.len() + 4;
        let commit = 48 + 8 + 4;
        std::fs::write(&active, &committed[..committed.len() - record - commit]).unwrap();
        let archives = open();
        let (missing, log) = logged(|| {
            let ids: Vec<BlockId> = blocks.iter().map(|(i, _)| *i).collect();
            archives.missing(&t(), &u(), &ids).unwrap()
        });
        assert_eq!(missing, [blocks[3].0]);
        assert!(
            log.lines()
                .any(|l| l.contains("ERROR") && l.contains("lost acknowledged data")),
            "{log}"
        );
        assert_eq!(archives.lost_records(), 1);
        assert_eq!(archives.damaged_openings(), 1);
        let damage = rt.block_on(db.damage(&t(), &u())).unwrap().unwrap();
        assert_eq!(damage.lost_records, 1);
        assert!(
            damage.detail.contains("3 data records where 4"),
            "{damage:?}"
        );
        let audit = rt.block_on(db.audit_entries(&t())).unwrap();
        assert!(
            audit.iter().any(|a| a.action == "archive.damaged"),
            "{audit:?}"
        );
        // Backing up again works and is checked from what is there now; the mark stays
        // until an operator clears it.
        put_in_batches(&archives, &blocks[3..], 1);
        drop(archives);
        let archives = open();
        assert_all_there(&archives, &blocks);
        assert_eq!(archives.lost_records(), 0, "nothing more lost");
        assert!(rt.block_on(db.damage(&t(), &u())).unwrap().is_some());
        assert!(rt.block_on(db.clear_damage(&t(), &u())).unwrap());
        assert_eq!(rt.block_on(db.damage(&t(), &u())).unwrap(), None);
    }

    /// Segments seal into the object store, and a reopened service (a restart) reads every
    /// record back from there; staged copies of published segments are gone. Both ways of
    /// publishing: the object store's create-only put, and the local store's hard link.
    #[test]
    fn sealed_segments_live_in_the_object_store() {
        sealed_segments_published(false);
        sealed_segments_published(true);
    }

    fn sealed_segments_published(link: bool) {
        let (rt, dir, db) = fixture();
        let store = || -> Arc<dyn ObjectStore> {
            Arc::new(
                LocalFileSystem::new_with_prefix(dir.path().join("segments"))
                    .unwrap()
                    .with_fsync(true),
            )
        };
        let open = || {
            if link {
                Archives::new_local(
                    db.clone(),
                    dir.path().join("staging"),
                    Arc::new(
                        LocalFileSystem::new_with_prefix(dir.path().join("segments"))
                            .unwrap()
                            .with_fsync(true),
                    ),
                    rt.handle().clone(),
                )
            } else {
                Archives::new(
                    db.clone(),
                    dir.path().join("staging"),
                    store(),
                    rt.handle().clone(),
                )
            }
            .with_segment_target(cairn_archive::MIN_SEGMENT_TARGET)
        };
        let blocks: Vec<(BlockId, Vec<u8>)> = (0..40).map(sealed).collect();
        let archives = open();
        put_in_batches(&archives, &blocks, 5);
        drop(archives);
        let published: Vec<object_store::ObjectMeta> = rt
            .block_on(async {
                use futures_util::TryStreamExt;
                store()
                    .list(Some(&ObjectPath::from("tenants/t/users/u")))
                    .try_collect()
                    .await
            })
            .unwrap();
        assert!(published.len() >= 2, "{published:?}");
        let archives = open();
        assert_all_there(&archives, &blocks);
        let ids: Vec<BlockId> = blocks.iter().map(|(i, _)| *i).collect();
        assert!(archives.missing(&t(), &u(), &ids).unwrap().is_empty());
        let staged = std::fs::read_dir(dir.path().join("staging/t/u"))
            .unwrap()
            .count();
        assert_eq!(staged, 1, "only the active segment stays staged");
        let head = rt.block_on(store().head(&published[0].location)).unwrap();
        assert!(head.size > 0);
    }

    /// A crash after a segment was published and before its active copy was removed leaves
    /// `seg-X.active` staged beside the published `seg-X`: the archive opens, reads everything,
    /// and the leftover copy is removed.
    #[test]
    fn a_published_segment_supersedes_its_staged_copy() {
        let (rt, dir, db) = fixture();
        let open = || {
            Archives::new(
                db.clone(),
                dir.path().join("staging"),
                Arc::new(LocalFileSystem::new_with_prefix(dir.path().join("segments")).unwrap()),
                rt.handle().clone(),
            )
            .with_segment_target(cairn_archive::MIN_SEGMENT_TARGET)
        };
        let blocks: Vec<(BlockId, Vec<u8>)> = (0..40).map(sealed).collect();
        let archives = open();
        put_in_batches(&archives, &blocks, 5);
        drop(archives);
        let first = cairn_archive::segment_name(0, false);
        let published = dir.path().join("segments/tenants/t/users/u").join(&first);
        let leftover = dir
            .path()
            .join("staging/t/u")
            .join(cairn_archive::segment_name(0, true));
        std::fs::copy(&published, &leftover).unwrap();
        assert_all_there(&open(), &blocks);
        assert!(!leftover.exists(), "the superseded staged copy is removed");
    }

    /// An archive that fails to open answers with the error, again at the next request, and
    /// leaves the slot usable (an earlier version deadlocked on its own slot lock here).
    #[test]
    fn a_failed_open_is_an_error_each_time() {
        let (rt, dir, db) = fixture();
        // The staging path is a file: the user's staging directory cannot be made.
        let staging = dir.path().join("staging");
        std::fs::write(&staging, b"not a directory").unwrap();
        let archives = Archives::new_local(
            db,
            staging,
            Arc::new(LocalFileSystem::new_with_prefix(dir.path().join("segments")).unwrap()),
            rt.handle().clone(),
        );
        // On a thread of its own, so that a hang fails the test instead of hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..2 {
                let r = archives.missing(&t(), &u(), &[BlockId::from_bytes([1; 32])]);
                let _ = tx.send(r.is_err());
            }
        });
        for _ in 0..2 {
            let failed = rx
                .recv_timeout(std::time::Duration::from_secs(10))
                .expect("the request hung");
            assert!(failed);
        }
        drop(rt);
    }

    /// Concurrent first requests for one archive: one opens it, the others wait for that open
    /// (none recovers the log beside another's appends), and every acknowledged block is there
    /// after a restart.
    #[test]
    fn concurrent_first_uploads_share_one_open() {
        let (rt, dir, db) = fixture();
        let open = || {
            Archives::new_local(
                db.clone(),
                dir.path().join("staging"),
                Arc::new(LocalFileSystem::new_with_prefix(dir.path().join("segments")).unwrap()),
                rt.handle().clone(),
            )
        };
        let blocks: Vec<(BlockId, Vec<u8>)> = (0..16).map(sealed).collect();
        let archives = open();
        let start = std::sync::Barrier::new(8);
        std::thread::scope(|scope| {
            for part in blocks.chunks(2) {
                let (archives, start) = (&archives, &start);
                scope.spawn(move || {
                    let refs: Vec<(BlockId, &[u8])> =
                        part.iter().map(|(i, b)| (*i, &b[..])).collect();
                    start.wait();
                    assert_eq!(
                        archives.put(&t(), &u(), KIND_BLOCK, &refs).unwrap().stored,
                        2
                    );
                });
            }
        });
        assert_eq!(lock(&archives.open).unwrap().len(), 1);
        drop(archives);
        assert_all_there(&open(), &blocks);
    }
}
