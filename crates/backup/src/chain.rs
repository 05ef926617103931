//! The client's view of its snapshot chain (B-8): a store may withhold or replay snapshots (it
//! cannot forge them: they are sealed and tagged), so the client keeps the head it last wrote
//! and refuses a store whose chain is older than that head, or does not lead back to it.

use std::fmt;
use std::str::FromStr;

use cairn_seal::BlockId;

use crate::error::BackupError;
use crate::snapshot::Snapshot;

/// The last snapshot this client wrote (or accepted): kept on the client, outside the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainHead {
    /// Its position in the chain.
    pub seq: u64,
    /// Its id.
    pub id: BlockId,
}

impl fmt::Display for ChainHead {
    /// `SEQ ID` (decimal, then 64 hex digits): the text a client stores.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.id)
    }
}

impl FromStr for ChainHead {
    type Err = BackupError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BackupError::Malformed("chain head (want `SEQ ID`)");
        let (seq, id) = s.trim().split_once(' ').ok_or_else(bad)?;
        let seq = seq.parse().map_err(|_| bad())?;
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        for (i, out) in bytes.iter_mut().enumerate() {
            *out = u8::from_str_radix(&id[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self {
            seq,
            id: BlockId::from_bytes(bytes),
        })
    }
}

/// Checks the store's snapshots (as [`Repository::snapshots`](crate::Repository::snapshots)
/// lists them, oldest first) against the client's `head`, and returns the newest snapshot: the
/// parent of the next backup.
///
/// The newest snapshot must lead back to `head` through its parents ([`BackupError::Rollback`]
/// if the store shows nothing as new as `head`; [`BackupError::Fork`] if it shows something at
/// least as new that does not descend from `head`). With no head (a first backup, or a client
/// that lost its state), any chain is accepted.
pub fn check_chain<'a>(
    snapshots: &'a [(BlockId, Snapshot)],
    head: Option<&ChainHead>,
) -> Result<Option<&'a (BlockId, Snapshot)>, BackupError> {
    let newest = snapshots.iter().max_by_key(|(_, s)| s.seq);
    let Some(head) = head else {
        return Ok(newest);
    };
    let Some(newest) = newest.filter(|(_, s)| s.seq >= head.seq) else {
        return Err(BackupError::Rollback {
            head: head.seq,
            store: newest.map(|(_, s)| s.seq),
        });
    };
    // Walk parents from the newest down to the head's position.
    let by_id: std::collections::HashMap<&BlockId, &Snapshot> =
        snapshots.iter().map(|(id, s)| (id, s)).collect();
    let (mut id, mut snap) = (&newest.0, &newest.1);
    while snap.seq > head.seq {
        let parent = snap
            .parent
            .as_ref()
            .ok_or(BackupError::Fork { head: head.seq })?;
        let next = by_id
            .get(parent)
            .filter(|p| p.seq + 1 == snap.seq)
            .ok_or(BackupError::Fork { head: head.seq })?;
        (id, snap) = (parent, next);
    }
    if *id == head.id && snap.seq == head.seq {
        Ok(Some(newest))
    } else {
        Err(BackupError::Fork { head: head.seq })
    }
}
