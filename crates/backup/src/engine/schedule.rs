//! The worker scheduler: when blocks are sealed one at a time by the worker that cut them and
//! when in batches, shared with idle workers; the outbox of named blocks not yet sent.

use std::sync::atomic::{AtomicUsize, Ordering};

use cairn_seal::{BlockId, BlockKind, Identified};

use crate::error::BackupError;
use crate::store::BlockStore;

use super::Repository;
use super::backup::BackupSummary;

/// Ids asked about (and blocks sent) per round trip, for trees.
pub(super) const BATCH: usize = 256;
/// Plaintext bytes a worker holds before asking the store what it lacks and sending (the
/// memory bound per worker), and the most blocks it holds (small files: one round trip, and
/// one commit, per batch rather than per 16 blocks), for a store behind a round trip. A store
/// that [answers locally](BlockStore::answers_locally) is asked about each block at once while
/// every worker has files of its own ([`Outbox`]), and the block sealed while it is still in the
/// worker's cache: measured on the peer benchmark's corpus, about 5 % less CPU time for a
/// first backup than batches of 4 MiB (`docs/design/0008-seal-while-hot.md`).
pub(super) const PENDING_BYTES: usize = 4 << 20;
/// Batches of a big file's blocks handed to the pool at most, per worker, once some workers
/// have no files left ([`Repository::backup_stream`]): about `HANDED * 4 MiB` of blocks per core
/// waiting to be sealed, at most.
pub(super) const HANDED: usize = 1;

/// Groups of files (to back up or restore) that no worker has started yet. While some wait,
/// every worker has files of its own.
pub(super) struct Waiting(AtomicUsize);

impl Waiting {
    pub(super) fn new(groups: usize) -> Self {
        Waiting(AtomicUsize::new(groups))
    }

    /// A worker starts a group.
    pub(super) fn start_one(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// Whether some group still waits for a worker.
    pub(super) fn any(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }
}

/// The file phase's shared counters: groups of files no worker has started yet, and batches of
/// blocks handed from one worker to the others.
pub(super) struct FilePhase {
    pub(super) waiting: Waiting,
    pub(super) handed: AtomicUsize,
}

/// A worker's named blocks not yet sent, and whether its blocks are sealed one by one instead.
///
/// For a store that [answers locally](BlockStore::answers_locally), a block is best sealed as
/// soon as it is named, by the worker that named it, while it is still in that core's cache
/// (`docs/design/0008-seal-while-hot.md`), but only while every worker has files of its own:
/// once no group of files is waiting for a worker, blocks are batched again, and a big file's
/// batches are handed to the workers left without files ([`Repository::backup_stream`]), so that a
/// big file read last, or alone, is sealed on every core.
pub(super) struct Outbox<'w> {
    pub(super) blocks: Vec<Identified>,
    /// The file phase's counters; `None` outside it (trees): batched, and never handed on.
    pub(super) phase: Option<&'w FilePhase>,
}

impl<'w> Outbox<'w> {
    /// An outbox for trees and anything else outside the file phase: always batched.
    pub(super) fn batched() -> Self {
        Outbox {
            blocks: Vec::new(),
            phase: None,
        }
    }

    /// An outbox for a worker of the file phase.
    pub(super) fn for_files(phase: &'w FilePhase) -> Self {
        Outbox {
            blocks: Vec::new(),
            phase: Some(phase),
        }
    }

    /// Whether the blocks should go to the store now: once they are [`PENDING_BYTES`] or
    /// [`BATCH`] blocks.
    pub(super) fn full(&self) -> bool {
        self.blocks.len() >= BATCH
            || self
                .blocks
                .iter()
                .map(|b| b.plaintext().len())
                .sum::<usize>()
                >= PENDING_BYTES
    }
}

impl<B: BlockStore> Repository<B> {
    /// Whether blocks go one at a time, each handled by the worker that has it while it is in
    /// that core's cache (sealed at once in a backup, written at once in a restore): for a store
    /// that [answers locally](BlockStore::answers_locally) (a question costs no round trip),
    /// while every worker has files of its own (some group is `waiting`). Otherwise in batches,
    /// which idle workers share.
    pub(super) fn one_at_a_time(&self, waiting: Option<&Waiting>) -> bool {
        self.store.answers_locally() && waiting.is_some_and(Waiting::any)
    }

    /// Whether a block named into `outbox` is sealed and sent at once ([`Outbox`]).
    pub(super) fn at_once(&self, outbox: &Outbox<'_>) -> bool {
        self.one_at_a_time(outbox.phase.map(|p| &p.waiting))
    }

    /// Sends the blocks of `outbox` the store lacks.
    pub(super) fn flush(
        &self,
        outbox: &mut Outbox<'_>,
        summary: &mut BackupSummary,
    ) -> Result<(), BackupError> {
        self.send(std::mem::take(&mut outbox.blocks), summary)
    }

    /// Names a block and sends it at once if the store lacks it, sealed straight from `plaintext`
    /// (no copy): for a store that [answers locally](BlockStore::answers_locally), where a
    /// question costs no round trip. Returns the block's id.
    pub(super) fn send_now(
        &self,
        kind: BlockKind,
        plaintext: &[u8],
        summary: &mut BackupSummary,
    ) -> Result<BlockId, BackupError> {
        let block = self.sealer.identify_borrowed(kind, plaintext);
        let id = block.id();
        self.send(vec![block], summary)?;
        Ok(id)
    }

    /// Seals and sends the blocks the store lacks (each once).
    pub(super) fn send<P: AsRef<[u8]> + Sync>(
        &self,
        blocks: Vec<Identified<P>>,
        summary: &mut BackupSummary,
    ) -> Result<(), BackupError> {
        if blocks.is_empty() {
            return Ok(());
        }
        let ids: Vec<BlockId> = blocks.iter().map(Identified::id).collect();
        let missing: std::collections::HashSet<BlockId> =
            self.store.missing(&ids)?.into_iter().collect();
        let mut sent = std::collections::HashSet::new();
        let to_seal: Vec<Identified<P>> = blocks
            .into_iter()
            .filter(|b| missing.contains(&b.id()) && sent.insert(b.id()))
            .collect();
        // Compress and encrypt on the pool: a big file's blocks are sealed by every core, not
        // only by the worker that cut it.
        use rayon::prelude::*;
        let out: Vec<(BlockId, Vec<u8>)> = to_seal
            .par_iter()
            .map(|block| {
                self.sealer
                    .seal_identified(block)
                    .map(|sealed| (block.id(), sealed.into_bytes()))
                    .map_err(BackupError::from)
            })
            .collect::<Result<_, _>>()?;
        drop(to_seal);
        summary.bytes_sent += out.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
        summary.blocks_sent += out.len() as u64;
        if !out.is_empty() {
            self.store.put_blocks(out)?;
        }
        Ok(())
    }

    /// Names a plaintext and queues it in `outbox`, sending the queue at once while
    /// [`Repository::at_once`], else once it is [full](Outbox::full); returns the block's id.
    pub(super) fn queue(
        &self,
        kind: BlockKind,
        plaintext: Vec<u8>,
        outbox: &mut Outbox<'_>,
        summary: &mut BackupSummary,
    ) -> Result<BlockId, BackupError> {
        let block = self.sealer.identify(kind, plaintext);
        let id = block.id();
        outbox.blocks.push(block);
        if self.at_once(outbox) || outbox.full() {
            self.flush(outbox, summary)?;
        }
        Ok(id)
    }
}
