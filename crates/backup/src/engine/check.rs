//! Check: every snapshot's trees opened; data blocks asked for, or opened (all, or one subset
//! of them).

use cairn_seal::{BlockId, BlockKind};

use crate::error::BackupError;
use crate::progress::{Meter, Phase};
use crate::store::BlockStore;
use crate::tree::{EntryKind, Tree};

use super::Repository;
use super::restore::RESTORE_BATCH;
use super::schedule::BATCH;

/// What a check found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Snapshots checked.
    pub snapshots: u64,
    /// Distinct blocks referenced (trees and data).
    pub blocks: u64,
    /// Data blocks opened (all of them with `read_data`, a subset's with a subset).
    pub blocks_read: u64,
    /// Problems, one line each.
    pub errors: Vec<String>,
    /// Snapshots skipped as not made with this key (with foreign snapshots skipped).
    pub foreign_snapshots: u64,
}

impl<B: BlockStore> Repository<B> {
    /// Every block a snapshot with root tree `root` reaches (the root, the trees below it and
    /// the data blocks they name), strictly ascending, read from its trees: what its reference
    /// list should be ([`crate::BackupSummary::refs`]).
    ///
    /// # Errors
    /// A tree that cannot be fetched, opened or decoded.
    pub fn reachable(&self, root: &BlockId) -> Result<Vec<BlockId>, BackupError> {
        let mut out = vec![*root];
        let mut seen = std::collections::HashSet::from([*root]);
        let mut stack = vec![*root];
        while let Some(tree_id) = stack.pop() {
            let tree = Tree::decode(&self.open(BlockKind::TREE, &tree_id)?)?;
            for e in &tree.entries {
                if let EntryKind::Dir { tree } = e.kind {
                    if seen.insert(tree) {
                        out.push(tree);
                        stack.push(tree);
                    }
                } else {
                    out.extend(e.kind.data_blocks().iter().filter(|id| seen.insert(**id)));
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Checks every snapshot's trees; with `read_data`, opens every data block too (B-14).
    /// Without it, data blocks are only asked for, in batches.
    pub fn check(&self, read_data: bool) -> Result<CheckReport, BackupError> {
        self.check_data(if read_data {
            DataCheck::All
        } else {
            DataCheck::Presence
        })
    }

    /// [`Repository::check`] with a choice of how much data to read (a subset lets a large
    /// repository be read over several runs).
    pub fn check_data(&self, mode: DataCheck) -> Result<CheckReport, BackupError> {
        if let DataCheck::Subset { n, of } = mode
            && (of == 0 || n == 0 || n > of)
        {
            return Err(BackupError::InvalidSubset { n, of });
        }
        let mut report = CheckReport::default();
        let mut seen = std::collections::HashSet::new();
        let mut data = Vec::new();
        // Packs: the end of the last file each one holds.
        let mut ends: std::collections::HashMap<BlockId, u64> = std::collections::HashMap::new();
        let (own, foreign) = self.snapshots_and_foreign()?;
        report.foreign_snapshots = foreign;
        for (_, snapshot) in own {
            report.snapshots += 1;
            let mut stack = vec![snapshot.root];
            while let Some(tree_id) = stack.pop() {
                if !seen.insert(tree_id) {
                    continue;
                }
                let tree = match self
                    .open(BlockKind::TREE, &tree_id)
                    .and_then(|t| Tree::decode(&t))
                {
                    Ok(t) => t,
                    Err(e) => {
                        report.errors.push(format!("tree {tree_id}: {e}"));
                        continue;
                    }
                };
                for e in tree.entries {
                    match e.kind {
                        EntryKind::Dir { tree } => stack.push(tree),
                        EntryKind::File { chunks, .. } => {
                            data.extend(chunks.into_iter().filter(|id| seen.insert(*id)));
                        }
                        EntryKind::Packed {
                            size, pack, offset, ..
                        } => {
                            // The pack must hold every byte its files claim.
                            let end = ends.entry(pack).or_insert(0);
                            *end = (*end).max(u64::from(offset).saturating_add(size));
                            if seen.insert(pack) {
                                data.push(pack);
                            }
                        }
                        EntryKind::Symlink { .. } => {}
                    }
                }
            }
        }
        report.blocks = seen.len() as u64;
        let (read, ask): (Vec<BlockId>, Vec<BlockId>) =
            data.into_iter().partition(|id| mode.reads(id));
        // Blocks not read are asked for, BATCH ids per round trip.
        for batch in ask.chunks(BATCH) {
            match self.store.missing(batch) {
                Ok(missing) => {
                    for id in missing {
                        let err = BackupError::Block(id.to_string());
                        report.errors.push(format!("block {id}: {err}"));
                    }
                }
                // A store that cannot answer: every id of the batch is unverified.
                Err(e) => {
                    let err = BackupError::from(e);
                    for id in batch {
                        report.errors.push(format!("block {id}: {err}"));
                    }
                }
            }
        }
        // Blocks read are opened on the CPU pool: authenticated, id recomputed.
        let meter = Meter::new(self.progress.as_deref(), Phase::Check, read.len() as u64, 0);
        use rayon::prelude::*;
        // RESTORE_BATCH blocks per fetch; a batch the store cannot answer whole (one block
        // missing) is asked again block by block, so that each error names its block.
        let failed: Vec<String> = read
            .par_chunks(RESTORE_BATCH)
            .flat_map_iter(|batch| {
                let opened: Vec<Result<Vec<u8>, BackupError>> = match self.fetch_blocks(batch) {
                    Ok(sealed) => batch
                        .iter()
                        .zip(sealed)
                        .map(|(id, bytes)| self.unseal(BlockKind::DATA, id, bytes))
                        .collect(),
                    _ => batch
                        .iter()
                        .map(|id| self.open(BlockKind::DATA, id))
                        .collect(),
                };
                batch
                    .iter()
                    .zip(opened)
                    .filter_map(|(id, result)| {
                        meter.add(1, result.as_ref().map_or(0, |d| d.len() as u64));
                        match result {
                            Err(err) => Some(format!("block {id}: {err}")),
                            Ok(d) if ends.get(id).is_some_and(|&end| end > d.len() as u64) => Some(
                                format!("block {id}: shorter than the packed files it holds"),
                            ),
                            Ok(_) => None,
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        report.errors.extend(failed);
        report.blocks_read = read.len() as u64;
        Ok(report)
    }
}

/// How much data a check reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataCheck {
    /// Only ask the store whether each data block is there.
    Presence,
    /// Open every data block (authenticate it and recompute its id).
    All,
    /// Open the `n`-th of `of` subsets (1-based; by block id, so the subsets are disjoint and
    /// together cover every block) and ask about the rest.
    Subset {
        /// Which subset, from 1.
        n: u32,
        /// How many subsets.
        of: u32,
    },
}

impl DataCheck {
    fn reads(self, id: &BlockId) -> bool {
        match self {
            Self::Presence => false,
            Self::All => true,
            Self::Subset { n, of } => {
                let mut first = [0u8; 8];
                first.copy_from_slice(&id.as_bytes()[..8]);
                u64::from_le_bytes(first) % u64::from(of) == u64::from(n - 1)
            }
        }
    }
}
