//! [`Algorithm::KeyedV1`](crate::Algorithm::KeyedV1): keyed gear hash + AES-128 PRF cut decision.
//!
//! Frozen. The construction is specified in `docs/format/chunk.md`; the known-answer vectors in
//! `tests/vectors/v1.json` fail if any output changes.

use aes::Aes128;
use aes::cipher::consts::U16;
use aes::cipher::typenum::Unsigned;
use aes::cipher::{
    Array, BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser,
    KeyInit, ParBlocks,
};
use cairn_keys::ChunkerKey;
use zeroize::{Zeroize, Zeroizing};

use crate::{ChunkerConfig, WINDOW};

/// BLAKE3 `derive_key` context of the gear table (2048 XOF bytes, 256 little-endian `u64`s).
pub(crate) const GEAR_CONTEXT: &str = "cairn 2026-11-27 v1 chunk gear table";
/// BLAKE3 `derive_key` context of the AES-128 PRF key (the first 16 output bytes).
pub(crate) const PRF_CONTEXT: &str = "cairn 2026-11-27 v1 chunk cut prf";

/// Positions evaluated per AES call: enough to keep the (V)AES pipeline full.
const BATCH: usize = 256;

/// The normalization constant `u` (times 100): with the small-chunk rate `u / (4 D)` before
/// `avg` and the large-chunk rate `4 u / D` after it (`D = avg - min`), the expected length is
/// `avg` (the derivation is in `docs/format/chunk.md`).
const U_TIMES_100: u128 = 127;

pub(crate) struct KeyedV1 {
    gear: [u64; 256],
    prf: Aes128,
    min: usize,
    avg: usize,
    threshold_small: u64,
    threshold_large: u64,
}

impl Drop for KeyedV1 {
    fn drop(&mut self) {
        self.gear.zeroize();
        // `prf` zeroizes its own key schedule (aes' `zeroize` feature).
    }
}

/// `floor(2^64 * num / den)`, saturating at `u64::MAX`.
fn threshold(num: u128, den: u128) -> u64 {
    let t = (1u128 << 64).saturating_mul(num) / den.max(1);
    u64::try_from(t).unwrap_or(u64::MAX)
}

/// The two cut thresholds for a configuration: (before avg, from avg on).
pub(crate) fn thresholds(config: &ChunkerConfig) -> (u64, u64) {
    // `min < avg` is guaranteed by `ChunkerConfig::new`, so d >= 1.
    let d = (config.avg() - config.min()) as u128;
    (
        threshold(U_TIMES_100, 400 * d),
        threshold(4 * U_TIMES_100, 100 * d),
    )
}

impl KeyedV1 {
    pub(crate) fn new(key: &ChunkerKey, config: &ChunkerConfig) -> Self {
        let mut table_bytes = Zeroizing::new([0u8; 256 * 8]);
        let mut hasher = blake3::Hasher::new_derive_key(GEAR_CONTEXT);
        hasher.update(key.expose_secret());
        hasher.finalize_xof().fill(table_bytes.as_mut());
        hasher.zeroize();
        let mut gear = [0u64; 256];
        for (entry, bytes) in gear.iter_mut().zip(table_bytes.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(bytes);
            *entry = u64::from_le_bytes(b);
            b.zeroize();
        }

        let prf_key = Zeroizing::new(blake3::derive_key(PRF_CONTEXT, key.expose_secret()));
        let mut aes_key = Zeroizing::new([0u8; 16]);
        aes_key.copy_from_slice(&prf_key[..16]);
        let prf = Aes128::new(&Array::from(*aes_key));

        let (threshold_small, threshold_large) = thresholds(config);
        Self {
            gear,
            prf,
            min: config.min(),
            avg: config.avg(),
            threshold_small,
            threshold_large,
        }
    }

    /// Length of the chunk starting at `data[0]`; `data` is already limited to `max` bytes.
    ///
    /// Candidate length `k` (for `k` in `min..end`) is a cut if the first 8 output bytes of
    /// `AES-128(prf_key, h_k as 16 LE bytes)`, read as a little-endian `u64`, are below the
    /// threshold for `k`. The first such `k` wins; if there is none the chunk ends at `end`.
    pub(crate) fn cut(&self, data: &[u8]) -> usize {
        let end = data.len();
        let min = self.min;
        if end <= min {
            return end;
        }
        // h_k is the gear hash of data[k - WINDOW .. k]: contributions older than 64 bytes are
        // shifted out of the 64-bit state, so warming up on exactly WINDOW bytes is exact.
        let mut h: u64 = 0;
        for &b in &data[min - WINDOW..min] {
            h = (h << 1).wrapping_add(self.gear[usize::from(b)]);
        }
        // Run the loop inside the cipher's backend closure: the `aes` crate then compiles it
        // with the CPU features it detected (VAES/AVX-512 here) and broadcasts the round keys
        // once per chunk instead of once per call (measured: 2x the AES throughput of calling
        // `encrypt_blocks` per batch from outside).
        let mut cut = end;
        self.prf.encrypt_with_backend(CutLoop {
            v1: self,
            data,
            start: min,
            h,
            cut: &mut cut,
        });
        cut
    }
}

/// The cut loop as a [`BlockCipherEncClosure`], so it runs inside the cipher's backend.
struct CutLoop<'a> {
    v1: &'a KeyedV1,
    data: &'a [u8],
    start: usize,
    h: u64,
    cut: &'a mut usize,
}

impl BlockSizeUser for CutLoop<'_> {
    type BlockSize = U16;
}

impl BlockCipherEncClosure for CutLoop<'_> {
    #[inline(always)]
    fn call<B: BlockCipherEncBackend<BlockSize = U16>>(self, backend: &B) {
        let Self {
            v1,
            data,
            start,
            mut h,
            cut,
        } = self;
        let end = data.len();
        let par = B::ParBlocksSize::USIZE;
        let mut blocks = [aes::Block::default(); BATCH];
        let mut k = start;
        while k < end {
            // Batches never straddle `avg`, so each has one threshold.
            let (limit, t) = if k < v1.avg {
                (v1.avg.min(end), v1.threshold_small)
            } else {
                (end, v1.threshold_large)
            };
            let m = BATCH.min(limit - k);
            let bytes = &data[k..k + m];
            // h_{k+2} = 4 h_k + (2 G[b_k] + G[b_{k+1}]): one shift-add per two bytes on the
            // dependency chain.
            let mut pairs = blocks[..m].chunks_exact_mut(2).zip(bytes.chunks_exact(2));
            for (pair, b) in &mut pairs {
                let (g0, g1) = (v1.gear[usize::from(b[0])], v1.gear[usize::from(b[1])]);
                pair[0] = Array::from(u128::from(h).to_le_bytes());
                pair[1] = Array::from(u128::from((h << 1).wrapping_add(g0)).to_le_bytes());
                h = (h << 2).wrapping_add((g0 << 1).wrapping_add(g1));
            }
            if m % 2 == 1 {
                blocks[m - 1] = Array::from(u128::from(h).to_le_bytes());
                h = (h << 1).wrapping_add(v1.gear[usize::from(bytes[m - 1])]);
            }
            for group in blocks[..m].chunks_mut(par) {
                match <&mut ParBlocks<B>>::try_from(&mut *group) {
                    Ok(full) => backend.encrypt_par_blocks_inplace(full),
                    Err(_) => backend.encrypt_tail_blocks_inplace(group),
                }
            }
            let lane = |block: &aes::Block| {
                u64::from_le_bytes([
                    block[0], block[1], block[2], block[3], block[4], block[5], block[6], block[7],
                ])
            };
            // Cheap, vectorisable test for "any hit" before looking for the first one.
            if blocks[..m].iter().map(lane).min().is_some_and(|r| r < t)
                && let Some(j) = blocks[..m].iter().position(|b| lane(b) < t)
            {
                *cut = k + j;
                return;
            }
            k += m;
        }
        *cut = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_of_default() {
        let (s, l) = thresholds(&ChunkerConfig::DEFAULT);
        // D = 512 KiB: small rate 1.27 / (4 D), large rate 4 * 1.27 / D.
        let d = 512.0 * 1024.0;
        let two64 = 18_446_744_073_709_551_616.0_f64;
        assert!(((s as f64) / two64 - 1.27 / (4.0 * d)).abs() < 1e-12);
        assert!(((l as f64) / two64 - 4.0 * 1.27 / d).abs() < 1e-12);
    }

    #[test]
    fn tiny_gap_saturates() {
        let c = ChunkerConfig::new(64, 65, 128).unwrap();
        let (_, l) = thresholds(&c);
        assert_eq!(l, u64::MAX);
    }
}
