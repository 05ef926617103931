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
pub(crate) const U_TIMES_100: u128 = 127;

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
pub(crate) fn threshold(num: u128, den: u128) -> u64 {
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

/// The gear table under `context`: 2048 bytes of the BLAKE3 `derive_key` XOF of the chunker key,
/// read as 256 little-endian `u64`s.
pub(crate) fn derive_gear(context: &str, key: &ChunkerKey) -> [u64; 256] {
    let mut table_bytes = Zeroizing::new([0u8; 256 * 8]);
    let mut hasher = blake3::Hasher::new_derive_key(context);
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
    gear
}

/// The AES-128 PRF under `context`: keyed with the first 16 bytes of BLAKE3 `derive_key`.
pub(crate) fn derive_prf(context: &str, key: &ChunkerKey) -> Aes128 {
    let prf_key = Zeroizing::new(blake3::derive_key(context, key.expose_secret()));
    let mut aes_key = Zeroizing::new([0u8; 16]);
    aes_key.copy_from_slice(&prf_key[..16]);
    Aes128::new(&Array::from(*aes_key))
}

impl KeyedV1 {
    pub(crate) fn new(key: &ChunkerKey, config: &ChunkerConfig) -> Self {
        let gear = derive_gear(GEAR_CONTEXT, key);
        let prf = derive_prf(PRF_CONTEXT, key);
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
        self.cut_with(data, Strategy::BEST)
    }

    /// [`Self::cut`] with a chosen evaluation strategy (all give the same answer).
    pub(crate) fn cut_with(&self, data: &[u8], strategy: Strategy) -> usize {
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
            strategy,
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
    strategy: Strategy,
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
            strategy,
            data,
            start,
            mut h,
            cut,
        } = self;
        let end = data.len();
        let mut blocks = [aes::Block::default(); BATCH];
        let mut k = start;
        while k < end {
            // Batches never straddle `avg`, so each has one threshold.
            let (limit, t) = if k < v1.avg {
                (v1.avg.min(end), v1.threshold_small)
            } else {
                (end, v1.threshold_large)
            };
            if strategy != Strategy::OneChain && limit - k >= REGION {
                match region(v1, backend, strategy, data, k, h, t) {
                    Ok(found) => {
                        *cut = found;
                        return;
                    }
                    Err(next) => {
                        h = next;
                        k += REGION;
                        continue;
                    }
                }
            }
            let m = BATCH.min(limit - k);
            let bytes = &data[k..k + m];
            // h_{k+2} = 4 h_k + (2 G[b_k] + G[b_{k+1}]): one shift-add per two bytes on the
            // dependency chain.
            let mut pairs = blocks[..m].chunks_exact_mut(2).zip(bytes.chunks_exact(2));
            for (pair, b) in &mut pairs {
                let (h1, h2) = gear_pair(&v1.gear, h, b[0], b[1]);
                pair[0] = block_of(h);
                pair[1] = block_of(h1);
                h = h2;
            }
            if m % 2 == 1 {
                blocks[m - 1] = block_of(h);
                h = (h << 1).wrapping_add(v1.gear[usize::from(bytes[m - 1])]);
            }
            encrypt(backend, WIDE_BATCHES, &mut blocks[..m]);
            // Cheap, vectorisable test for "any hit" before looking for the first one.
            if any_below(&blocks[..m], t)
                && let Some(j) = blocks[..m].iter().position(|b| prf_output(b) < t)
            {
                *cut = k + j;
                return;
            }
            k += m;
        }
        *cut = end;
    }
}

/// How the optimised loop evaluates candidates. All three give identical cuts (the unit test
/// `strategies_agree` checks it); [`Strategy::BEST`] is what this build uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// One gear chain, batches of `BATCH` blocks.
    OneChain,
    /// `LANES` chains per region, each block built, encrypted and tested in registers.
    RegionsFused,
    /// `LANES` chains per region, encrypted in batches of `BATCH` blocks.
    RegionsBatched,
}

impl Strategy {
    /// Wide batches when they are fast in this build ([`WIDE_BATCHES`]), else fused.
    pub(crate) const BEST: Self = if WIDE_BATCHES {
        Self::RegionsBatched
    } else {
        Self::RegionsFused
    };
}

/// Independent gear-hash chains per region: the serial shift-add of one chain, not AES, bounded
/// the loop (measured); four chains over four consecutive quarters of a region run in parallel.
const LANES: usize = 4;
/// Positions per lane per region. A region is evaluated whole unless lane 0 finds a cut, so the
/// work past the cut is at most one region (16 KiB against ~512 KiB evaluated per chunk).
const LANE_LEN: usize = 4096;
/// Positions per region.
const REGION: usize = LANES * LANE_LEN;

/// The PRF output read by the cut test: the first 8 bytes of the block, little-endian.
#[inline(always)]
pub(crate) fn prf_output(block: &aes::Block) -> u64 {
    u64::from_le_bytes([
        block[0], block[1], block[2], block[3], block[4], block[5], block[6], block[7],
    ])
}

/// Whether any block's PRF output is below `t` (branch-free, so it vectorises).
#[inline(always)]
fn any_below(blocks: &[aes::Block], t: u64) -> bool {
    blocks.iter().map(prf_output).min().is_some_and(|r| r < t)
}

/// Whether this build may use the cipher's wide (VAES) batches at full speed. In a build for a
/// generic x86-64 the `aes` crate (0.9.4) still picks its VAES-512 backend at run time, but its
/// batch loader (`Array::from_fn` over `__m512i`) is not inlined there and costs more than the
/// batching saves (measured: 3.5-4.4 ns per block batched, against 1.9-2.2 ns one block at a
/// time). Built with those features on (`-C target-cpu=native` on this machine) everything
/// inlines and batches run at about 1 ns per block.
const WIDE_BATCHES: bool = cfg!(all(target_feature = "avx512f", target_feature = "vaes"));

/// Encrypts `blocks` in place: in the backend's widest batches if `wide`, else one block at a
/// time.
#[inline(always)]
fn encrypt<B: BlockCipherEncBackend<BlockSize = U16>>(
    backend: &B,
    wide: bool,
    blocks: &mut [aes::Block],
) {
    if wide {
        for group in blocks.chunks_mut(B::ParBlocksSize::USIZE) {
            match <&mut ParBlocks<B>>::try_from(&mut *group) {
                Ok(full) => backend.encrypt_par_blocks_inplace(full),
                Err(_) => backend.encrypt_tail_blocks_inplace(group),
            }
        }
    } else {
        for block in blocks {
            backend.encrypt_block_inplace(block);
        }
    }
}

/// Evaluates the `REGION` candidates `k..k + REGION` (all with threshold `t`; `h` is `h_k`) as
/// `LANES` chains, one per consecutive quarter of the region. Returns `Ok(cut)` for the first cut
/// in the region, or `Err(h)` with `h_{k + REGION}` when there is none. Gives exactly the cuts of
/// the one-chain loop (the reference test and the vectors check it).
#[inline(always)]
fn region<B: BlockCipherEncBackend<BlockSize = U16>>(
    v1: &KeyedV1,
    backend: &B,
    strategy: Strategy,
    data: &[u8],
    k: usize,
    h: u64,
    t: u64,
) -> Result<usize, u64> {
    let gear = &v1.gear;
    let lanes: [&[u8]; LANES] =
        core::array::from_fn(|lane| &data[k + lane * LANE_LEN..k + (lane + 1) * LANE_LEN]);
    let mut hs = [h; LANES];
    for (lane, hl) in hs.iter_mut().enumerate().skip(1) {
        let p = k + lane * LANE_LEN;
        *hl = data[p - WINDOW..p].iter().fold(0u64, |acc, &b| {
            (acc << 1).wrapping_add(gear[usize::from(b)])
        });
    }
    // The first hit of each lane (offset in the lane), `usize::MAX` for none yet.
    let mut first = [usize::MAX; LANES];
    if strategy == Strategy::RegionsBatched {
        region_batched(gear, backend, &lanes, &mut hs, t, &mut first);
    } else {
        region_fused(gear, backend, &lanes, &mut hs, t, &mut first);
    }
    match first.iter().position(|&f| f != usize::MAX) {
        Some(lane) => Ok(k + lane * LANE_LEN + first[lane]),
        None => Err(hs[LANES - 1]),
    }
}

/// One gear step over two bytes: `(h_{j+1}, h_{j+2})` from `h_j`, with
/// `h_{j+2} = 4 h_j + (2 G[b_j] + G[b_{j+1}])` (one shift-add per two bytes on the chain).
#[inline(always)]
fn gear_pair(gear: &[u64; 256], h: u64, b0: u8, b1: u8) -> (u64, u64) {
    let (g0, g1) = (gear[usize::from(b0)], gear[usize::from(b1)]);
    (
        (h << 1).wrapping_add(g0),
        (h << 2).wrapping_add((g0 << 1).wrapping_add(g1)),
    )
}

/// The block a digest is encrypted as: `h` zero-extended to 128 bits, little-endian.
#[inline(always)]
pub(crate) fn block_of(h: u64) -> aes::Block {
    Array::from(u128::from(h).to_le_bytes())
}

/// [`region`] one block at a time: build, encrypt and test each block in registers.
#[inline(always)]
fn region_fused<B: BlockCipherEncBackend<BlockSize = U16>>(
    gear: &[u64; 256],
    backend: &B,
    lanes: &[&[u8]; LANES],
    hs: &mut [u64; LANES],
    t: u64,
    first: &mut [usize; LANES],
) {
    let mut j = 0;
    while j < LANE_LEN {
        for (lane, bytes) in lanes.iter().enumerate() {
            let h0 = hs[lane];
            let (h1, h2) = gear_pair(gear, h0, bytes[j], bytes[j + 1]);
            let (mut x0, mut x1) = (block_of(h0), block_of(h1));
            backend.encrypt_block_inplace(&mut x0);
            backend.encrypt_block_inplace(&mut x1);
            if first[lane] == usize::MAX {
                if prf_output(&x0) < t {
                    first[lane] = j;
                } else if prf_output(&x1) < t {
                    first[lane] = j + 1;
                }
            }
            hs[lane] = h2;
        }
        if first[0] != usize::MAX {
            return;
        }
        j += 2;
    }
}

/// [`region`] in batches of `BATCH` blocks (`BATCH / LANES` positions of every lane).
#[inline(always)]
fn region_batched<B: BlockCipherEncBackend<BlockSize = U16>>(
    gear: &[u64; 256],
    backend: &B,
    lanes: &[&[u8]; LANES],
    hs: &mut [u64; LANES],
    t: u64,
    first: &mut [usize; LANES],
) {
    const STEP: usize = BATCH / LANES;
    let mut blocks = [aes::Block::default(); BATCH];
    for s in (0..LANE_LEN).step_by(STEP) {
        for (pair, quad) in blocks.chunks_exact_mut(2 * LANES).enumerate() {
            let j = s + 2 * pair;
            for (lane, bytes) in lanes.iter().enumerate() {
                let h0 = hs[lane];
                let (h1, h2) = gear_pair(gear, h0, bytes[j], bytes[j + 1]);
                quad[lane] = block_of(h0);
                quad[LANES + lane] = block_of(h1);
                hs[lane] = h2;
            }
        }
        encrypt(backend, true, &mut blocks);
        if any_below(&blocks, t) {
            for (i, block) in blocks.iter().enumerate() {
                let (j, lane) = (s + i / LANES, i % LANES);
                if prf_output(block) < t && first[lane] == usize::MAX {
                    first[lane] = j;
                }
            }
            if first[0] != usize::MAX {
                return;
            }
        }
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

    /// The three evaluation strategies give the same cuts, including the case the region code
    /// must get right: several lanes of one region with hits, where the earliest lane wins even
    /// if a later lane hit at a smaller offset (a high cut rate after `avg` makes that common).
    #[test]
    fn strategies_agree() {
        let key = ChunkerKey::from_bytes([7; 32]);
        let mut data = vec![0u8; 3 << 20];
        blake3::Hasher::new()
            .update(b"strategies")
            .finalize_xof()
            .fill(&mut data);
        let low_entropy: Vec<u8> = data.iter().map(|b| b & 3).collect();
        let configs = [
            ChunkerConfig::DEFAULT,
            ChunkerConfig::new(64, 128, 1 << 20).unwrap(),
            ChunkerConfig::new(4096, 20_000, 200_000).unwrap(),
            ChunkerConfig::new(64, 70_000, 300_000).unwrap(),
        ];
        for config in configs {
            let v1 = KeyedV1::new(&key, &config);
            for input in [&data, &low_entropy] {
                let mut offset = 0;
                let mut regions_used = 0;
                while offset < input.len() {
                    let rest = &input[offset..input.len().min(offset + config.max())];
                    let one = v1.cut_with(rest, Strategy::OneChain);
                    assert_eq!(v1.cut_with(rest, Strategy::RegionsFused), one, "{config:?}");
                    assert_eq!(
                        v1.cut_with(rest, Strategy::RegionsBatched),
                        one,
                        "{config:?}"
                    );
                    let (min, avg) = (config.min(), config.avg());
                    if (avg - min >= REGION && rest.len() >= min + REGION)
                        || (one > avg && rest.len() >= avg + REGION)
                    {
                        regions_used += 1;
                    }
                    offset += one.max(1);
                }
                assert!(regions_used > 0, "{config:?} never reached a region");
            }
        }
    }

    #[test]
    fn tiny_gap_saturates() {
        let c = ChunkerConfig::new(64, 65, 128).unwrap();
        let (_, l) = thresholds(&c);
        assert_eq!(l, u64::MAX);
    }
}
