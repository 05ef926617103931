//! The in-memory index over sealed segments: 8 bytes per record.
//!
//! Each entry packs 40 bits of the record key's prefix and a 24-bit segment slot into one
//! `u64`, kept in sorted runs that merge like a log-structured merge tree (each run at least
//! twice the size of the next). A lookup binary-searches every run for the key's prefix and
//! returns the candidate segments; the segment's on-disk index then confirms the full key (a
//! false candidate costs one on-disk search; with 10 million keys the chance per lookup of an
//! absent key is about 10^7 / 2^40 ≈ 10^-5).

use crate::format::Key;

/// Most sealed segments an archive can index (24-bit slots): 16.7 million.
pub const MAX_SEALED_SEGMENTS: u64 = 1 << 24;

fn prefix(key: &Key) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[..8]);
    u64::from_le_bytes(b) >> 24
}

/// Sorted runs of `prefix << 24 | slot`.
#[derive(Debug, Default)]
pub(crate) struct SealedIndex {
    runs: Vec<Vec<u64>>,
}

impl SealedIndex {
    /// Adds the keys of the segment in `slot` (`slot < MAX_SEALED_SEGMENTS`).
    pub(crate) fn insert(&mut self, slot: u64, keys: impl Iterator<Item = Key>) {
        let mut run: Vec<u64> = keys.map(|k| prefix(&k) << 24 | slot).collect();
        run.sort_unstable();
        run.dedup();
        if run.is_empty() {
            return;
        }
        self.runs.push(run);
        while self.runs.len() >= 2 {
            let n = self.runs.len();
            if self.runs[n - 2].len() > 2 * self.runs[n - 1].len() {
                break;
            }
            let (Some(b), Some(a)) = (self.runs.pop(), self.runs.pop()) else {
                break;
            };
            self.runs.push(merge(&a, &b));
        }
    }

    /// Slots of segments that may hold `key`, newest first.
    pub(crate) fn candidates(&self, key: &Key) -> Vec<u64> {
        let p = prefix(key);
        let (lo, hi) = (p << 24, (p << 24) | ((1 << 24) - 1));
        let mut out = Vec::new();
        for run in &self.runs {
            let start = run.partition_point(|&e| e < lo);
            out.extend(
                run[start..]
                    .iter()
                    .take_while(|&&e| e <= hi)
                    .map(|&e| e & ((1 << 24) - 1)),
            );
        }
        out.sort_unstable_by(|a, b| b.cmp(a));
        out.dedup();
        out
    }

    /// Entries held (8 bytes each).
    pub(crate) fn len(&self) -> usize {
        self.runs.iter().map(Vec::len).sum()
    }

    /// Bytes of heap the entries occupy.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.runs.iter().map(|r| r.capacity() * 8).sum::<usize>() + self.runs.capacity() * 24
    }
}

fn merge(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] <= b[j] {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}
