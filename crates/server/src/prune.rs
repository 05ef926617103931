//! Prune (`docs/design/0009-retention-and-prune.md` §5.4, §6): forget what the policy no longer
//! keeps, mark the blocks no kept snapshot reaches, and, once a mark is older than the grace
//! period and its block still unreferenced, elide it by compacting the segments whose live
//! share fell under the threshold. Every step runs under the archive's lock (and, shared, its
//! lease), so it is serialised with uploads and snapshot commits; each is idempotent, so a
//! crash anywhere leaves a state from which the next prune is correct.

use std::collections::{HashMap, HashSet};

use cairn_seal::BlockId;
use cairn_token::{TenantId, UserId};

use crate::archives::{
    Archives, KIND_BLOCK, KIND_FORGET, KIND_SNAPSHOT, StoreError, block_id_from_hex, lock,
};
use crate::refs::Lists;

/// The first bytes of a forget record.
pub(crate) const FORGET_MAGIC: [u8; 4] = *b"CRNF";
/// The forget record's version.
pub(crate) const FORGET_VERSION: u8 = 1;

/// How long a mark must stand before its block may be elided, by default: longer than any
/// backup we expect (a backup that asked which blocks were missing before the mark commits its
/// snapshot within it, and that commit clears the mark).
pub const DEFAULT_GRACE_SECS: i64 = 24 * 3600;

/// A sealed segment is compacted when less than this share of its payload bytes is live.
pub const DEFAULT_LIVE_THRESHOLD_PCT: u8 = 80;

/// How a prune runs: the operator's settings (`server retention prune-settings`, stored in
/// `operator_settings`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneOptions {
    /// [`DEFAULT_GRACE_SECS`].
    pub grace_secs: i64,
    /// [`DEFAULT_LIVE_THRESHOLD_PCT`]; 100 compacts every segment with anything dead.
    pub live_threshold_pct: u8,
    /// How often the servers prune every archive on their own ([`DEFAULT_EVERY_HOURS`]; 0:
    /// never, only when an admin asks).
    #[serde(default = "default_every_hours")]
    pub every_hours: u32,
}

/// Every archive is pruned this often by default (by whichever instance claims the run).
pub const DEFAULT_EVERY_HOURS: u32 = 24;

fn default_every_hours() -> u32 {
    DEFAULT_EVERY_HOURS
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self {
            grace_secs: DEFAULT_GRACE_SECS,
            live_threshold_pct: DEFAULT_LIVE_THRESHOLD_PCT,
            every_hours: DEFAULT_EVERY_HOURS,
        }
    }
}

/// What the policy decided for one archive, handed to [`Archives::prune`].
#[derive(Clone, Debug, Default)]
pub struct Forgetting {
    /// Snapshots to forget now.
    pub now: Vec<BlockId>,
    /// Every snapshot forgotten (by earlier prunes and now), except those a legal hold covers
    /// (a hold placed after the forget keeps their blocks).
    pub forgotten: HashSet<BlockId>,
    /// Forgotten snapshots whose records may be elided: forgotten at least the grace period
    /// ago and not held.
    pub sweepable: HashSet<BlockId>,
}

/// What one prune of one archive did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    /// Snapshots forgotten by this prune.
    pub forgotten: usize,
    /// Snapshots kept.
    pub kept: usize,
    /// Kept snapshots without a reference list (stored by an agent that sent none): while
    /// any is kept, nothing of the archive is marked or elided.
    pub unlisted: usize,
    /// Distinct blocks the kept snapshots reach.
    pub live_blocks: usize,
    /// Blocks marked by this prune.
    pub marked: usize,
    /// Marks cleared because the block is reached again.
    pub unmarked: usize,
    /// Blocks past the grace period and still unreferenced.
    pub dead: usize,
    /// Sealed segments rewritten.
    pub segments_compacted: usize,
    /// Records elided (blocks, superseded copies and forgotten snapshot records).
    pub records_elided: u64,
    /// Payload bytes elided (given back to the tenant's quota).
    pub bytes_freed: u64,
    /// Segment bytes before and after (sealed segments and the active one).
    pub bytes_before: u64,
    /// See `bytes_before`.
    pub bytes_after: u64,
    /// Milliseconds spent forgetting, rebuilding what is live, marking, compacting, and
    /// forgetting the marks of what was elided.
    pub millis: PhaseMillis,
}

/// Where a prune's time went, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PhaseMillis {
    /// The forget record and rows.
    pub forget: u64,
    /// Rebuilding the kept snapshots' full lists.
    pub live: u64,
    /// Marking and clearing marks.
    pub mark: u64,
    /// Weighing and compacting segments.
    pub sweep: u64,
    /// Forgetting the marks of elided blocks, and the quota.
    pub finish: u64,
}

/// Milliseconds since `*at`, which moves to now.
fn lap(at: &mut std::time::Instant) -> u64 {
    let now = std::time::Instant::now();
    let ms = now.duration_since(*at).as_millis();
    *at = now;
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// A forget record: magic, version, time (i64 Unix seconds), count (u32), ids.
fn forget_record(now: i64, ids: &[BlockId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(17 + 32 * ids.len());
    out.extend_from_slice(&FORGET_MAGIC);
    out.push(FORGET_VERSION);
    out.extend_from_slice(&now.to_le_bytes());
    out.extend_from_slice(&u32::try_from(ids.len()).unwrap_or(u32::MAX).to_le_bytes());
    for id in ids {
        out.extend_from_slice(id.as_bytes());
    }
    out
}

fn hexes<'a>(ids: impl IntoIterator<Item = &'a BlockId>) -> Vec<String> {
    ids.into_iter().map(|i| hex::encode(i.as_bytes())).collect()
}

impl Archives {
    /// Prunes one archive at `now` (Unix seconds): forgets `forgetting.now` (one forget
    /// record, then the rows), rebuilds what the kept snapshots reach from their reference
    /// lists, marks every block outside it, and compacts each sealed segment whose live share
    /// is under the threshold, eliding the blocks marked at least the grace period ago that
    /// are still unreferenced, superseded copies, and sweepable snapshot records.
    ///
    /// # Errors
    /// [`StoreError`]; a stored reference list that does not decode or apply stops the prune
    /// before anything is marked ([`StoreError::Stored`]).
    pub fn prune(
        &self,
        tenant: &TenantId,
        user: &UserId,
        forgetting: &Forgetting,
        now: i64,
        options: PruneOptions,
    ) -> Result<PruneReport, StoreError> {
        self.prune_until(tenant, user, forgetting, now, options, usize::MAX)
            .map(Option::unwrap_or_default)
    }

    /// [`Archives::prune`], stopped right after its `stop_after`-th durable step, as a crash
    /// there would leave it: `None` if it stopped. The steps: the forget record, the rows
    /// forgotten, the marks added, the marks cleared, each sealed segment compacted (or left),
    /// the marks of elided blocks forgotten, the quota given back. For crash-point tests.
    ///
    /// # Errors
    /// As [`Archives::prune`].
    #[cfg(feature = "test-util")]
    pub fn prune_interrupted(
        &self,
        tenant: &TenantId,
        user: &UserId,
        forgetting: &Forgetting,
        now: i64,
        options: PruneOptions,
        stop_after: usize,
    ) -> Result<Option<PruneReport>, StoreError> {
        self.prune_until(tenant, user, forgetting, now, options, stop_after)
    }

    fn prune_until(
        &self,
        tenant: &TenantId,
        user: &UserId,
        forgetting: &Forgetting,
        now: i64,
        options: PruneOptions,
        stop_after: usize,
    ) -> Result<Option<PruneReport>, StoreError> {
        let mut steps = 0usize;
        // Counts a durable step; `true` once the caller asked to stop there.
        let mut stop = || {
            steps += 1;
            steps >= stop_after
        };
        let (archive, _in_flight) = self.archive(tenant, user)?;
        let mut log = lock(&archive)?;
        let mut report = PruneReport::default();
        let mut at = std::time::Instant::now();
        let len_all = |log: &cairn_archive::Archive<_>| -> Result<u64, StoreError> {
            let mut total = 0;
            for seg in 0..=log.active_segment() {
                total += log.segment_len(seg)?;
            }
            Ok(total)
        };
        report.bytes_before = len_all(&log)?;

        // 1. Forget: the record first (in the chain), then the rows (replayed if a crash
        // comes between: forgetting a forgotten row changes nothing).
        if !forgetting.now.is_empty() {
            let record = forget_record(now, &forgetting.now);
            let key = *blake3::hash(&record).as_bytes();
            self.append_committed(tenant, user, &mut log, &[(KIND_FORGET, key, &record[..])])?;
            if stop() {
                return Ok(None);
            }
            self.runtime.block_on(self.db.forget_snapshots(
                tenant,
                user,
                &hexes(&forgetting.now),
                now,
            ))?;
            report.forgotten = forgetting.now.len();
        }
        if stop() {
            return Ok(None);
        }

        report.millis.forget = lap(&mut at);

        // 2. What is live: every block a kept snapshot's full list names.
        let snapshots: Vec<BlockId> = log
            .records_of_kind(KIND_SNAPSHOT)?
            .into_iter()
            .filter(|(_, loc)| !loc.elided)
            .map(|(key, _)| BlockId::from_bytes(key))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut lists = Lists::default();
        let mut live: HashSet<BlockId> = HashSet::new();
        for s in &snapshots {
            if forgetting.forgotten.contains(s) {
                continue;
            }
            report.kept += 1;
            match lists.full(&log, s, usize::MAX)? {
                Some(full) => live.extend(full.iter().copied()),
                None => report.unlisted += 1,
            }
        }
        drop(lists);
        report.live_blocks = live.len();
        if report.unlisted > 0 {
            // A kept snapshot whose blocks are unknown: collecting anything could lose them.
            report.bytes_after = report.bytes_before;
            return Ok(Some(report));
        }

        report.millis.live = lap(&mut at);

        // 3. Mark what is not live; clear the marks of what is live again.
        let mut marks: HashMap<BlockId, i64> = self
            .runtime
            .block_on(self.db.prune_marks(tenant, user))?
            .into_iter()
            .filter_map(|(h, t)| Some((block_id_from_hex(&h)?, t)))
            .collect();
        let mut to_mark = Vec::new();
        let mut to_clear = Vec::new();
        let mut seen = HashSet::new();
        for (key, _) in log.records_of_kind(KIND_BLOCK)? {
            let id = BlockId::from_bytes(key);
            if !seen.insert(id) {
                continue;
            }
            let Some(newest) = log.locate(&key)? else {
                continue;
            };
            if live.contains(&id) {
                if marks.remove(&id).is_some() {
                    to_clear.push(id);
                }
            } else if !newest.elided && !marks.contains_key(&id) {
                to_mark.push((hex::encode(key), i64::from(newest.len)));
                marks.insert(id, now);
            }
        }
        drop(seen);
        self.runtime
            .block_on(self.db.add_prune_marks(tenant, user, &to_mark, now))?;
        if stop() {
            return Ok(None);
        }
        self.runtime
            .block_on(self.db.clear_prune_marks(tenant, user, &hexes(&to_clear)))?;
        if stop() {
            return Ok(None);
        }
        report.marked = to_mark.len();
        report.unmarked = to_clear.len();

        report.millis.mark = lap(&mut at);

        // 4. Sweep: dead = marked at least the grace period ago, and still not live (it is
        // recomputed above, under the lock, with every snapshot committed since the mark).
        let dead: HashSet<BlockId> = marks
            .iter()
            .filter(|(id, at)| now.saturating_sub(**at) >= options.grace_secs && !live.contains(id))
            .map(|(id, _)| *id)
            .collect();
        report.dead = dead.len();
        let threshold = u64::from(options.live_threshold_pct.min(100));
        let mut plans = Vec::new();
        for segment in 0..log.sealed_segments() {
            let records = log.segment_records(segment)?;
            let mut is_dead = HashSet::new();
            let (mut total, mut dead_bytes) = (0u64, 0u64);
            for (key, loc) in &records {
                if loc.elided {
                    continue;
                }
                total += u64::from(loc.len);
                let id = BlockId::from_bytes(*key);
                let collect = match loc.kind {
                    KIND_BLOCK => {
                        let newest = log.locate(key)?;
                        let superseded = newest
                            .is_some_and(|n| (n.segment, n.offset) != (loc.segment, loc.offset));
                        superseded || dead.contains(&id)
                    }
                    KIND_SNAPSHOT => forgetting.sweepable.contains(&id),
                    _ => false,
                };
                if collect {
                    dead_bytes += u64::from(loc.len);
                    is_dead.insert((loc.segment, loc.offset));
                }
            }
            if dead_bytes > 0 && (total - dead_bytes) * 100 < threshold * total {
                plans.push((segment, is_dead, dead_bytes));
            }
        }
        // Compact: the new generations are written and published a few segments at a time,
        // side by side (each is a read, two hash passes, a write and an fsync of the segment),
        // then made the segments one by one. A crash between leaves both generations of a
        // segment, and the next open keeps the newer.
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        for batch in plans.chunks(workers) {
            let shared = &*log;
            let prepared: Vec<_> = std::thread::scope(|scope| {
                let handles: Vec<_> = batch
                    .iter()
                    .map(|(segment, is_dead, _)| {
                        scope.spawn(move || {
                            shared.prepare_compaction(*segment, |_, loc| {
                                is_dead.contains(&(loc.segment, loc.offset))
                            })
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(cairn_archive::ArchiveError::Poisoned))
                    })
                    .collect()
            });
            for (p, (_, _, dead_bytes)) in prepared.into_iter().zip(batch) {
                let done = log.finish_compaction(p?)?;
                if done.elided > 0 {
                    report.segments_compacted += 1;
                    report.records_elided += done.elided;
                    report.bytes_freed += dead_bytes;
                }
                if stop() {
                    return Ok(None);
                }
            }
        }

        report.millis.sweep = lap(&mut at);

        // 5. Forget the marks of the blocks elided for good.
        let mut gone = Vec::new();
        for id in &dead {
            if log.locate(id.as_bytes())?.is_none_or(|l| l.elided) {
                gone.push(*id);
            }
        }
        self.runtime
            .block_on(self.db.clear_prune_marks(tenant, user, &hexes(&gone)))?;
        if stop() {
            return Ok(None);
        }
        if report.bytes_freed > 0 {
            let freed = i64::try_from(report.bytes_freed).unwrap_or(i64::MAX);
            self.runtime
                .block_on(self.db.release(tenant, user, freed))?;
        }
        report.bytes_after = len_all(&log)?;
        report.millis.finish = lap(&mut at);
        tracing::info!(
            tenant = tenant.as_str(),
            user = user.as_str(),
            report = %serde_json::to_string(&report).unwrap_or_default(),
            "prune done"
        );
        Ok(Some(report))
    }
}
