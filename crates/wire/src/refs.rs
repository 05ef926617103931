//! Reference lists (`docs/format/wire.md` §5): which blocks a snapshot reaches, in plaintext,
//! as a delta against an earlier snapshot's list, so that the server can tell which blocks are
//! live without reading a tree (`docs/design/0009-retention-and-prune.md` §4).
//!
//! ```
//! use cairn_seal::BlockId;
//! use cairn_wire::refs::RefList;
//!
//! let id = |b| BlockId::from_bytes([b; 32]);
//! let first = RefList::complete(vec![id(1), id(2)]);
//! let second = RefList::delta(id(9), &[id(1), id(2)], &[id(1), id(3)]);
//! assert_eq!(second.added, [id(3)]);
//! assert_eq!(second.removed, [id(2)]);
//! let full = second.apply(Some(&first.apply(None).unwrap())).unwrap();
//! assert_eq!(full, [id(1), id(3)]);
//! assert_eq!(RefList::decode(&second.encode()), Ok(second));
//! ```

use cairn_seal::BlockId;

/// The first bytes of a reference list.
pub const REFS_MAGIC: [u8; 4] = *b"CRNR";
/// The reference-list format version.
pub const REFS_VERSION: u8 = 1;
/// Header: magic, version, base snapshot id (zeros for none), added count, removed count.
pub const REFS_HEADER_LEN: usize = 4 + 1 + 32 + 4 + 4;
/// Most ids one list may name (added plus removed): 2 Mi ids, 64 MiB.
pub const MAX_REFS: usize = 2 << 20;

/// Why a reference list was refused, or could not be applied to its base.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefsError {
    /// Not magic and version 1, or shorter than its header.
    #[error("malformed reference list header")]
    Header,
    /// More ids than [`MAX_REFS`].
    #[error("reference list too large")]
    TooLarge,
    /// The counts do not match the body's length.
    #[error("reference list framing does not match its length")]
    Framing,
    /// The added or removed ids are not strictly ascending, or one is in both.
    #[error("reference list ids are not sorted and distinct")]
    Unsorted,
    /// A delta without its base's list, or a complete list given a base.
    #[error("reference list base does not match")]
    Base,
    /// An added id is already in the base, or a removed one is not.
    #[error("reference list does not apply to its base")]
    Apply,
}

/// One snapshot's reference list: its base's full list, plus `added`, minus `removed`. A list
/// without a base is complete (`added` is the full list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefList {
    /// The snapshot whose full list this one is relative to.
    pub base: Option<BlockId>,
    /// Ids reached now and not by the base, strictly ascending.
    pub added: Vec<BlockId>,
    /// Ids the base reached and this snapshot does not, strictly ascending.
    pub removed: Vec<BlockId>,
}

impl RefList {
    /// A complete list of `ids` (sorted and deduplicated here).
    #[must_use]
    pub fn complete(mut ids: Vec<BlockId>) -> Self {
        ids.sort_unstable();
        ids.dedup();
        Self {
            base: None,
            added: ids,
            removed: Vec::new(),
        }
    }

    /// The delta from `base`'s full list `old` to `new` (both strictly ascending).
    #[must_use]
    pub fn delta(base: BlockId, old: &[BlockId], new: &[BlockId]) -> Self {
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        let (mut i, mut j) = (0, 0);
        loop {
            match (old.get(i), new.get(j)) {
                (Some(a), Some(b)) if a == b => {
                    i += 1;
                    j += 1;
                }
                (Some(a), Some(b)) if a < b => {
                    removed.push(*a);
                    i += 1;
                }
                (_, Some(b)) => {
                    added.push(*b);
                    j += 1;
                }
                (Some(a), None) => {
                    removed.push(*a);
                    i += 1;
                }
                (None, None) => break,
            }
        }
        Self {
            base: Some(base),
            added,
            removed,
        }
    }

    /// The full list this one describes, given its base's full list (strictly ascending).
    ///
    /// # Errors
    /// [`RefsError::Base`] if a base is needed and not given, or given and not needed;
    /// [`RefsError::Apply`] if an added id is in the base or a removed one is not.
    pub fn apply(&self, base: Option<&[BlockId]>) -> Result<Vec<BlockId>, RefsError> {
        let old: &[BlockId] = match (self.base, base) {
            (Some(_), Some(old)) => old,
            (None, None) => &[],
            _ => return Err(RefsError::Base),
        };
        let mut out = Vec::with_capacity(old.len() + self.added.len());
        let (mut add, mut remove) = (self.added.iter().peekable(), self.removed.iter().peekable());
        for id in old {
            while let Some(a) = add.next_if(|a| *a < id) {
                out.push(*a);
            }
            if add.peek() == Some(&id) {
                return Err(RefsError::Apply);
            }
            if remove.next_if(|r| *r == id).is_some() {
                continue;
            }
            if remove.peek().is_some_and(|r| *r < id) {
                return Err(RefsError::Apply);
            }
            out.push(*id);
        }
        if remove.next().is_some() {
            return Err(RefsError::Apply);
        }
        out.extend(add);
        Ok(out)
    }

    /// The list's bytes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(REFS_HEADER_LEN + 32 * (self.added.len() + self.removed.len()));
        out.extend_from_slice(&REFS_MAGIC);
        out.push(REFS_VERSION);
        out.extend_from_slice(
            self.base
                .as_ref()
                .map_or(&[0; 32], BlockId::as_bytes)
                .as_slice(),
        );
        for n in [self.added.len(), self.removed.len()] {
            out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
        }
        for id in self.added.iter().chain(&self.removed) {
            out.extend_from_slice(id.as_bytes());
        }
        out
    }

    /// Parses a list, checking its framing, its bounds and that its ids are sorted and distinct
    /// (not whether it applies to its base: [`RefList::apply`]).
    ///
    /// # Errors
    /// [`RefsError::Header`], [`RefsError::TooLarge`], [`RefsError::Framing`],
    /// [`RefsError::Unsorted`].
    pub fn decode(bytes: &[u8]) -> Result<Self, RefsError> {
        let (header, body) = bytes
            .split_at_checked(REFS_HEADER_LEN)
            .ok_or(RefsError::Header)?;
        if header.get(..4) != Some(&REFS_MAGIC[..]) || header.get(4) != Some(&REFS_VERSION) {
            return Err(RefsError::Header);
        }
        let word = |at: usize| {
            header
                .get(at..at + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_le_bytes)
                .ok_or(RefsError::Header)
        };
        let base = header
            .get(5..37)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or(RefsError::Header)?;
        let (added, removed) = (word(37)? as usize, word(41)? as usize);
        let total = added.checked_add(removed).ok_or(RefsError::TooLarge)?;
        if total > MAX_REFS {
            return Err(RefsError::TooLarge);
        }
        if body.len() != total * 32 {
            return Err(RefsError::Framing);
        }
        let ids: Vec<BlockId> = body
            .chunks_exact(32)
            .map(|c| <[u8; 32]>::try_from(c).map(BlockId::from_bytes))
            .collect::<Result<_, _>>()
            .map_err(|_| RefsError::Framing)?;
        let (added, removed) = ids.split_at(added);
        let ascending = |v: &[BlockId]| v.windows(2).all(|w| w[0] < w[1]);
        if !ascending(added) || !ascending(removed) || overlap(added, removed) {
            return Err(RefsError::Unsorted);
        }
        let base = (base != [0; 32]).then(|| BlockId::from_bytes(base));
        if base.is_none() && !removed.is_empty() {
            return Err(RefsError::Base);
        }
        Ok(Self {
            base,
            added: added.to_vec(),
            removed: removed.to_vec(),
        })
    }
}

/// Whether two strictly ascending lists share an id.
fn overlap(a: &[BlockId], b: &[BlockId]) -> bool {
    let (mut i, mut j) = (a.iter().peekable(), b.iter().peekable());
    while let (Some(x), Some(y)) = (i.peek(), j.peek()) {
        match x.cmp(y) {
            std::cmp::Ordering::Less => {
                i.next();
            }
            std::cmp::Ordering::Greater => {
                j.next();
            }
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn id(b: u8) -> BlockId {
        BlockId::from_bytes([b; 32])
    }

    #[test]
    fn delta_then_apply_gives_the_new_list() {
        let cases: [(&[u8], &[u8]); 5] = [
            (&[], &[1, 2]),
            (&[1, 2], &[]),
            (&[1, 3, 5], &[2, 3, 4, 6]),
            (&[1, 2, 3], &[1, 2, 3]),
            (&[5], &[1, 9]),
        ];
        for (old, new) in cases {
            let old: Vec<_> = old.iter().map(|b| id(*b)).collect();
            let new: Vec<_> = new.iter().map(|b| id(*b)).collect();
            let d = RefList::delta(id(0xEE), &old, &new);
            assert_eq!(d.apply(Some(&old)), Ok(new.clone()));
            assert_eq!(RefList::decode(&d.encode()), Ok(d));
        }
    }

    #[test]
    fn a_list_that_does_not_fit_its_base_is_refused() {
        let base = [id(1), id(3)];
        let adds_present = RefList {
            base: Some(id(9)),
            added: vec![id(3)],
            removed: vec![],
        };
        assert_eq!(adds_present.apply(Some(&base)), Err(RefsError::Apply));
        let removes_absent = RefList {
            base: Some(id(9)),
            added: vec![],
            removed: vec![id(2)],
        };
        assert_eq!(removes_absent.apply(Some(&base)), Err(RefsError::Apply));
        let removes_past_end = RefList {
            base: Some(id(9)),
            added: vec![],
            removed: vec![id(4)],
        };
        assert_eq!(removes_past_end.apply(Some(&base)), Err(RefsError::Apply));
        assert_eq!(adds_present.apply(None), Err(RefsError::Base));
        assert_eq!(
            RefList::complete(vec![id(1)]).apply(Some(&base)),
            Err(RefsError::Base)
        );
    }

    #[test]
    fn malformed_lists_are_typed_errors() {
        let good = RefList::delta(id(9), &[id(1), id(2)], &[id(3)]).encode();
        for cut in 0..good.len() {
            assert!(RefList::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(RefList::decode(&longer), Err(RefsError::Framing));
        let mut bad = good.clone();
        bad[4] = 2;
        assert_eq!(RefList::decode(&bad), Err(RefsError::Header));
        let mut huge = good.clone();
        huge[37..41].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(RefList::decode(&huge), Err(RefsError::TooLarge));
        let unsorted = RefList {
            base: None,
            added: vec![id(2), id(1)],
            removed: vec![],
        };
        assert_eq!(
            RefList::decode(&unsorted.encode()),
            Err(RefsError::Unsorted)
        );
        let both = RefList {
            base: Some(id(9)),
            added: vec![id(1), id(4)],
            removed: vec![id(4)],
        };
        assert_eq!(RefList::decode(&both.encode()), Err(RefsError::Unsorted));
        let removes_without_base = RefList {
            base: None,
            added: vec![],
            removed: vec![id(1)],
        };
        assert_eq!(
            RefList::decode(&removes_without_base.encode()),
            Err(RefsError::Base)
        );
    }
}
