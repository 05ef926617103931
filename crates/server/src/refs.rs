//! Reference lists on the server (`docs/design/0009-retention-and-prune.md` §4): a snapshot
//! arrives with the list of blocks it reaches, checked against the archive and stored beside
//! it (kind [`KIND_REFS`]); prune rebuilds full lists from them to know what is live, without
//! a key.

use std::collections::HashMap;

use cairn_archive::Archive;
use cairn_seal::BlockId;
use cairn_token::{TenantId, UserId};
use cairn_wire::refs::RefList;

use crate::archives::{
    Archives, KIND_BLOCK, KIND_REFS, KIND_SNAPSHOT, RefsRefusal, StoreError, Stored, lock, refs_key,
};
use crate::segments::Segments;

/// The longest chain of deltas a list may hang from: a longer one is refused
/// ([`RefsRefusal::Base`]) and the agent sends its list complete (it does every 32).
pub const MAX_REFS_DEPTH: usize = 64;

/// The stored list of `snapshot`, if it has one.
fn stored_list(log: &Archive<Segments>, snapshot: &BlockId) -> Result<Option<RefList>, StoreError> {
    match log.locate(&refs_key(snapshot))? {
        Some(loc) if loc.kind == KIND_REFS && !loc.elided => {
            let bytes = log.read_committed(&loc)?;
            RefList::decode(&bytes)
                .map(Some)
                .map_err(|_| StoreError::Stored("reference list"))
        }
        _ => Ok(None),
    }
}

/// Full lists rebuilt from an archive's stored lists, remembered as they are rebuilt (a prune
/// rebuilds every kept snapshot's; most share their chain).
#[derive(Default)]
pub(crate) struct Lists {
    full: HashMap<BlockId, Vec<BlockId>>,
}

impl Lists {
    /// The full list of `snapshot`; `None` if it (or a base of its chain) has no stored list,
    /// or its chain is longer than `depth_limit`.
    ///
    /// # Errors
    /// A stored list that does not decode or apply ([`StoreError::Stored`]); the log's errors.
    pub(crate) fn full(
        &mut self,
        log: &Archive<Segments>,
        snapshot: &BlockId,
        depth_limit: usize,
    ) -> Result<Option<&[BlockId]>, StoreError> {
        // Walk back to a remembered or complete list, then apply the deltas forward.
        let mut chain: Vec<(BlockId, RefList)> = Vec::new();
        let mut at = *snapshot;
        while !self.full.contains_key(&at) {
            if chain.len() > depth_limit {
                return Ok(None);
            }
            let Some(list) = stored_list(log, &at)? else {
                return Ok(None);
            };
            let base = list.base;
            chain.push((at, list));
            match base {
                Some(b) => at = b,
                None => break,
            }
        }
        while let Some((id, list)) = chain.pop() {
            let base = list.base.and_then(|b| self.full.get(&b)).map(Vec::as_slice);
            let full = list
                .apply(base)
                .map_err(|_| StoreError::Stored("reference list does not apply"))?;
            self.full.insert(id, full);
        }
        Ok(self.full.get(snapshot).map(Vec::as_slice))
    }
}

impl Archives {
    /// Stores a sealed snapshot with its reference list (all or nothing, one commit). The list
    /// must hang from a stored list within [`MAX_REFS_DEPTH`] deltas and apply to it, and
    /// every block it adds must be stored and not pruned; an added block that prune marked is
    /// live again (its mark is cleared). Without a list (the version 1 upload), the snapshot
    /// is stored alone, and prune will collect nothing of this archive while it is kept.
    ///
    /// # Errors
    /// [`StoreError::Refs`] for a list refused (`409`: the agent sends it complete, or uploads
    /// the pruned blocks again); what [`Archives::put`] fails with.
    pub fn put_snapshot(
        &self,
        tenant: &TenantId,
        user: &UserId,
        id: &BlockId,
        sealed: &[u8],
        refs: Option<&RefList>,
    ) -> Result<Stored, StoreError> {
        let Some(refs) = refs else {
            return self.put(tenant, user, KIND_SNAPSHOT, &[(*id, sealed)]);
        };
        let (archive, _in_flight) = self.archive(tenant, user)?;
        let mut log = lock(&archive)?;
        if let Some(loc) = log.locate(id.as_bytes())? {
            // Stored already (a retry): the same bytes are a no-op, others a conflict.
            if loc.kind != KIND_SNAPSHOT || loc.elided || log.read_committed(&loc)? != sealed {
                return Err(StoreError::Conflict(*id));
            }
            return Ok(Stored {
                already_present: 1,
                ..Stored::default()
            });
        }
        if let Some(base) = &refs.base {
            let mut lists = Lists::default();
            let full = lists
                .full(&log, base, MAX_REFS_DEPTH)?
                .ok_or(RefsRefusal::Base)?;
            refs.apply(Some(full)).map_err(|_| RefsRefusal::Base)?;
        }
        let (mut missing, mut pruned) = (Vec::new(), Vec::new());
        for added in &refs.added {
            match log.locate(added.as_bytes())? {
                Some(loc) if loc.kind == KIND_BLOCK && !loc.elided => {}
                Some(loc) if loc.kind == KIND_BLOCK => pruned.push(*added),
                _ => missing.push(*added),
            }
        }
        if !pruned.is_empty() {
            return Err(RefsRefusal::Pruned(pruned).into());
        }
        if !missing.is_empty() {
            return Err(RefsRefusal::Missing(missing).into());
        }
        let list = refs.encode();
        let bytes = self.append_committed(
            tenant,
            user,
            &mut log,
            &[
                (KIND_REFS, refs_key(id), &list[..]),
                (KIND_SNAPSHOT, *id.as_bytes(), sealed),
            ],
        )?;
        let marks = self.marked(tenant, user)?;
        let revived: Vec<String> = refs
            .added
            .iter()
            .filter(|a| marks.contains(a))
            .map(|a| hex::encode(a.as_bytes()))
            .collect();
        if !revived.is_empty() {
            // After the commit: a crash before this leaves marks on referenced blocks, which
            // the sweep does not collect (it recomputes what is live under the lease).
            self.runtime
                .block_on(self.db.clear_prune_marks(tenant, user, &revived))?;
        }
        Ok(Stored {
            stored: 1,
            already_present: 0,
            bytes,
        })
    }
}
