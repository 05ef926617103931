//! [`Algorithm::KeyedV2`](crate::Algorithm::KeyedV2): the v1 decision evaluated along a
//! pseudo-random walk.
//!
//! Frozen. The construction is specified in `docs/format/chunk.md` §10; the known-answer vectors
//! in `tests/vectors/v2.json` fail if any output changes.
//!
//! v1 evaluates AES-128 at every candidate length, and that one block per byte bounds its speed.
//! v2 evaluates it at candidate lengths chosen by a walk: from `min`, each evaluation's output
//! says both whether to cut here and how far to step to the next candidate (1 to `stride` bytes).
//! Which positions are evaluated is thus itself a function of PRF outputs only, so every cut
//! decision still reads nothing but PRF outputs; the thresholds are scaled by the mean step so the
//! cut rate per byte matches v1's.

use aes::Aes128;
use aes::cipher::consts::U16;
use aes::cipher::{
    BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser,
};
use cairn_keys::ChunkerKey;
use zeroize::{Zeroize, Zeroizing};

use crate::keyed::{U_TIMES_100, derive_prf, prf_output, threshold};
use crate::{ChunkerConfig, WINDOW};

/// BLAKE3 `derive_key` context of the v2 NH key (72 XOF bytes, 18 little-endian `u32`s).
pub(crate) const NH_CONTEXT: &str = "cairn 2026-11-28 v2 chunk window nh key";
/// BLAKE3 `derive_key` context of the v2 AES-128 PRF key (the first 16 output bytes).
pub(crate) const PRF_CONTEXT: &str = "cairn 2026-11-28 v2 chunk cut prf";

/// The largest stride (steps are `1..=stride` bytes, so the mean step is `(stride + 1) / 2`).
pub(crate) const MAX_STRIDE: usize = 64;

/// The walk's stride for a configuration: the largest power of two `s <= MAX_STRIDE` with
/// `64 s^2 <= avg - min`. Two walks over the same bytes meet after about `s^2 / 2` bytes, so
/// this keeps the stretch an edit disturbs small against the span where cuts fall.
pub(crate) fn stride(config: &ChunkerConfig) -> usize {
    let d = config.avg() - config.min();
    let mut s = MAX_STRIDE;
    while s > 1 && 64 * s * s > d {
        s /= 2;
    }
    s
}

/// The two per-evaluation thresholds (before `avg`, from `avg` on): v1's rates times the mean
/// step `(s + 1) / 2`, so the expected cut rate per byte is v1's.
pub(crate) fn thresholds(config: &ChunkerConfig, s: usize) -> (u64, u64) {
    let d = (config.avg() - config.min()) as u128;
    let s1 = s as u128 + 1;
    (
        threshold(U_TIMES_100 * s1, 800 * d),
        threshold(4 * U_TIMES_100 * s1, 200 * d),
    )
}

pub(crate) struct KeyedV2 {
    nh_key: [u32; NH_KEY_WORDS],
    prf: Aes128,
    min: usize,
    avg: usize,
    step_mask: u64,
    threshold_small: u64,
    threshold_large: u64,
}

impl Drop for KeyedV2 {
    fn drop(&mut self) {
        self.nh_key.zeroize();
        // `prf` zeroizes its own key schedule (aes' `zeroize` feature).
    }
}

/// The NH key: the BLAKE3 `derive_key` XOF under [`NH_CONTEXT`], read as little-endian `u32`s.
fn derive_nh_key(key: &ChunkerKey) -> [u32; NH_KEY_WORDS] {
    let mut bytes = Zeroizing::new([0u8; NH_KEY_WORDS * 4]);
    let mut hasher = blake3::Hasher::new_derive_key(NH_CONTEXT);
    hasher.update(key.expose_secret());
    hasher.finalize_xof().fill(bytes.as_mut());
    hasher.zeroize();
    let mut words = [0u32; NH_KEY_WORDS];
    for (word, b) in words.iter_mut().zip(bytes.chunks_exact(4)) {
        *word = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    words
}

impl KeyedV2 {
    pub(crate) fn new(key: &ChunkerKey, config: &ChunkerConfig) -> Self {
        let s = stride(config);
        let (threshold_small, threshold_large) = thresholds(config, s);
        Self {
            nh_key: derive_nh_key(key),
            prf: derive_prf(PRF_CONTEXT, key),
            min: config.min(),
            avg: config.avg(),
            step_mask: s as u64 - 1,
            threshold_small,
            threshold_large,
        }
    }

    /// Length of the chunk starting at `data[0]`; `data` is already limited to `max` bytes.
    ///
    /// Candidates `k_0 = min`, `k_{i+1} = k_i + 1 + (hi_i & (stride - 1))`, where `lo_i` and
    /// `hi_i` are the two little-endian `u64` halves of `AES-128(prf_key, h_{k_i} as 16 LE
    /// bytes)`. The first candidate with `lo_i` below its threshold is the cut; a walk that
    /// reaches `end` cuts there.
    pub(crate) fn cut(&self, data: &[u8]) -> usize {
        let end = data.len();
        if end <= self.min {
            return end;
        }
        let mut cut = end;
        self.prf.encrypt_with_backend(Walk {
            v2: self,
            data,
            cut: &mut cut,
        });
        cut
    }
}

/// Words of the NH key: 16 for the window plus 2 for the second, Toeplitz-shifted pass.
pub(crate) const NH_KEY_WORDS: usize = WINDOW / 4 + 2;

/// The window's keyed universal hash, as the AES input block: NH (the UMAC paper; RFC 4418 §5) with
/// 32-bit words, twice with the key shifted by two words (the Toeplitz construction), giving two
/// 64-bit halves. Any two distinct windows collide with probability at most 2^-64 over the key.
#[inline(always)]
fn nh_block(key: &[u32; NH_KEY_WORDS], w: &[u8; WINDOW]) -> aes::Block {
    let mut m = [0u32; WINDOW / 4];
    for (word, bytes) in m.iter_mut().zip(w.chunks_exact(4)) {
        *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    let pass = |k: &[u32]| -> u64 {
        let mut sum = 0u64;
        for i in 0..WINDOW / 8 {
            let a = u64::from(m[2 * i].wrapping_add(k[2 * i]));
            let b = u64::from(m[2 * i + 1].wrapping_add(k[2 * i + 1]));
            sum = sum.wrapping_add(a * b);
        }
        sum
    };
    let lo = pass(&key[..WINDOW / 4]);
    let hi = pass(&key[2..]);
    aes::Block::from((u128::from(hi) << 64 | u128::from(lo)).to_le_bytes())
}

/// The walk as a [`BlockCipherEncClosure`], so it runs inside the cipher's backend (compiled
/// with the AES instructions the `aes` crate detected).
struct Walk<'a> {
    v2: &'a KeyedV2,
    data: &'a [u8],
    cut: &'a mut usize,
}

impl BlockSizeUser for Walk<'_> {
    type BlockSize = U16;
}

impl BlockCipherEncClosure for Walk<'_> {
    #[inline(always)]
    fn call<B: BlockCipherEncBackend<BlockSize = U16>>(self, backend: &B) {
        let Self { v2, data, cut } = self;
        let end = data.len();
        let mut k = v2.min;
        while k < end {
            let Some(window) = data
                .get(k - WINDOW..k)
                .and_then(|w| <&[u8; WINDOW]>::try_from(w).ok())
            else {
                break;
            };
            let mut block = nh_block(&v2.nh_key, window);
            backend.encrypt_block_inplace(&mut block);
            let t = if k < v2.avg {
                v2.threshold_small
            } else {
                v2.threshold_large
            };
            if prf_output(&block) < t {
                *cut = k;
                return;
            }
            k += 1 + usize::try_from(high_half(&block) & v2.step_mask).unwrap_or(0);
        }
        *cut = end;
    }
}

/// The second 8 bytes of the block, little-endian: the step of the walk.
#[inline(always)]
fn high_half(block: &aes::Block) -> u64 {
    u64::from_le_bytes([
        block[8], block[9], block[10], block[11], block[12], block[13], block[14], block[15],
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stride_of_configs() {
        assert_eq!(stride(&ChunkerConfig::DEFAULT), 64);
        assert_eq!(stride(&ChunkerConfig::new(64, 128, 256).unwrap()), 1);
        // d = 4096: 64 s^2 <= 4096 gives s = 8.
        assert_eq!(stride(&ChunkerConfig::new(4096, 8192, 65536).unwrap()), 8);
    }

    /// NH against a literal evaluation of RFC 4418's definition, on a window with high bytes
    /// (so the 32-bit additions wrap).
    #[test]
    fn nh_matches_its_definition() {
        let key = derive_nh_key(&ChunkerKey::from_bytes([3; 32]));
        let w: [u8; WINDOW] = core::array::from_fn(|i| 0xFF - u8::try_from(i).unwrap());
        let word = |i: usize| u32::from_le_bytes(w[4 * i..4 * i + 4].try_into().unwrap());
        let nh = |shift: usize| -> u64 {
            (0..8).fold(0u64, |acc, i| {
                let a = word(2 * i).wrapping_add(key[2 * i + shift]) as u64;
                let b = word(2 * i + 1).wrapping_add(key[2 * i + 1 + shift]) as u64;
                acc.wrapping_add(a.wrapping_mul(b))
            })
        };
        let block = nh_block(&key, &w);
        assert_eq!(block[..8], nh(0).to_le_bytes());
        assert_eq!(block[8..], nh(2).to_le_bytes());
    }

    #[test]
    fn thresholds_scale_v1_by_the_mean_step() {
        let c = ChunkerConfig::DEFAULT;
        let (s1, l1) = crate::keyed::thresholds(&c);
        let (s2, l2) = thresholds(&c, 64);
        // (64 + 1) / 2 = 32.5 times v1's, up to rounding.
        assert!((s2 as f64 / s1 as f64 - 32.5).abs() < 1e-6);
        assert!((l2 as f64 / l1 as f64 - 32.5).abs() < 1e-6);
    }
}
