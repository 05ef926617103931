//! Deliberately naive implementations of `docs/format/chunk.md` (v1 and v2), written from the
//! spec: no batching, no rolling, every hash recomputed from its 64-byte window, NH evaluated
//! term by term. The optimised chunkers must agree with them on every input.

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Test data generation and statistics cast bounded values; truncation is intended there.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]

use aes::Aes128;
use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};
use cairn_chunk::{Chunker, ChunkerConfig};
use cairn_keys::ChunkerKey;
use proptest::prelude::*;

struct Reference {
    gear: [u64; 256],
    prf: Aes128,
    min: usize,
    avg: usize,
    max: usize,
    t_small: u64,
    t_large: u64,
}

impl Reference {
    fn new(key: &[u8; 32], min: usize, avg: usize, max: usize) -> Self {
        let mut table = [0u8; 2048];
        let mut h = blake3::Hasher::new_derive_key("cairn 2026-11-27 v1 chunk gear table");
        h.update(key);
        h.finalize_xof().fill(&mut table);
        let gear = core::array::from_fn(|i| {
            u64::from_le_bytes(table[8 * i..8 * i + 8].try_into().unwrap())
        });
        let prf_key = blake3::derive_key("cairn 2026-11-27 v1 chunk cut prf", key);
        let prf = Aes128::new(&Array::from(<[u8; 16]>::try_from(&prf_key[..16]).unwrap()));
        let d = (avg - min) as u128;
        let t = |num: u128, den: u128| u64::try_from((1u128 << 64) * num / den).unwrap_or(u64::MAX);
        Self {
            gear,
            prf,
            min,
            avg,
            max,
            t_small: t(127, 400 * d),
            t_large: t(508, 100 * d),
        }
    }

    /// h_k: gear hash of the 64 bytes before position k, from scratch.
    fn hash(&self, data: &[u8], k: usize) -> u64 {
        data[k - 64..k].iter().fold(0u64, |h, &b| {
            (h << 1).wrapping_add(self.gear[usize::from(b)])
        })
    }

    fn cut(&self, data: &[u8]) -> usize {
        let end = data.len().min(self.max);
        if data.len() <= self.min {
            return data.len();
        }
        for k in self.min..end {
            let mut block = Array::from(u128::from(self.hash(data, k)).to_le_bytes());
            self.prf.encrypt_block(&mut block);
            let r = u64::from_le_bytes(block[..8].try_into().unwrap());
            let t = if k < self.avg {
                self.t_small
            } else {
                self.t_large
            };
            if r < t {
                return k;
            }
        }
        end
    }

    fn lengths(&self, data: &[u8]) -> Vec<usize> {
        lengths(data, |rest| self.cut(rest))
    }
}

/// Chunk lengths of `data`, cutting each chunk with `cut`.
fn lengths(data: &[u8], cut: impl Fn(&[u8]) -> usize) -> Vec<usize> {
    let mut out = vec![];
    let mut at = 0;
    while at < data.len() {
        let n = cut(&data[at..]);
        out.push(n);
        at += n;
    }
    out
}

fn configs() -> impl Strategy<Value = (usize, usize, usize)> {
    (64usize..600, 1usize..900, 0usize..2000).prop_map(|(min, da, dm)| {
        let avg = min + da;
        (min, avg, avg + dm)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn optimised_equals_reference(
        key in any::<[u8; 32]>(),
        (min, avg, max) in configs(),
        data in prop::collection::vec(any::<u8>(), 0..20_000),
    ) {
        let fast = Chunker::keyed_v1(&ChunkerKey::from_bytes(key), ChunkerConfig::new(min, avg, max).unwrap());
        let slow = Reference::new(&key, min, avg, max);
        let got: Vec<usize> = fast.chunks(&data).map(|c| c.len).collect();
        prop_assert_eq!(got, slow.lengths(&data));
    }

    /// Low-entropy inputs exercise repeated windows and long runs.
    #[test]
    fn optimised_equals_reference_low_entropy(
        key in any::<[u8; 32]>(),
        (min, avg, max) in configs(),
        data in prop::collection::vec(0u8..3, 0..20_000),
    ) {
        let fast = Chunker::keyed_v1(&ChunkerKey::from_bytes(key), ChunkerConfig::new(min, avg, max).unwrap());
        let slow = Reference::new(&key, min, avg, max);
        let got: Vec<usize> = fast.chunks(&data).map(|c| c.len).collect();
        prop_assert_eq!(got, slow.lengths(&data));
    }
}

/// The default sizes on a few MiB (the batching crosses `avg` and many batch boundaries).
#[test]
fn default_config_equals_reference() {
    let key = [0x5a; 32];
    let mut data = vec![0u8; 6 << 20];
    blake3::Hasher::new()
        .update(b"reference")
        .finalize_xof()
        .fill(&mut data);
    let c = ChunkerConfig::DEFAULT;
    let fast = Chunker::keyed_v1(&ChunkerKey::from_bytes(key), c);
    let slow = Reference::new(&key, c.min(), c.avg(), c.max());
    let got: Vec<usize> = fast.chunks(&data).map(|c| c.len).collect();
    assert_eq!(got, slow.lengths(&data));
}

/// v2 from the spec: the walk over candidates, NH of each window computed term by term.
struct Reference2 {
    nh_key: [u32; 18],
    prf: Aes128,
    min: usize,
    avg: usize,
    max: usize,
    stride: u64,
    t_small: u64,
    t_large: u64,
}

impl Reference2 {
    fn new(key: &[u8; 32], min: usize, avg: usize, max: usize) -> Self {
        let mut nh = [0u8; 72];
        let mut h = blake3::Hasher::new_derive_key("cairn 2026-11-28 v2 chunk window nh key");
        h.update(key);
        h.finalize_xof().fill(&mut nh);
        let nh_key =
            core::array::from_fn(|i| u32::from_le_bytes(nh[4 * i..4 * i + 4].try_into().unwrap()));
        let prf_key = blake3::derive_key("cairn 2026-11-28 v2 chunk cut prf", key);
        let prf = Aes128::new(&Array::from(<[u8; 16]>::try_from(&prf_key[..16]).unwrap()));
        let d = avg - min;
        // The largest power of two s <= 64 with 64 s^2 <= avg - min.
        let stride = [64u64, 32, 16, 8, 4, 2, 1]
            .into_iter()
            .find(|&s| 64 * s * s <= d as u64)
            .unwrap_or(1);
        let t = |num: u128, den: u128| u64::try_from((1u128 << 64) * num / den).unwrap_or(u64::MAX);
        let (d, s1) = (d as u128, u128::from(stride) + 1);
        Self {
            nh_key,
            prf,
            min,
            avg,
            max,
            stride,
            t_small: t(127 * s1, 800 * d),
            t_large: t(508 * s1, 200 * d),
        }
    }

    /// NH of the 64 bytes before position k, with the key shifted by `shift` words.
    fn nh(&self, data: &[u8], k: usize, shift: usize) -> u64 {
        let w = &data[k - 64..k];
        let m = |i: usize| u32::from_le_bytes(w[4 * i..4 * i + 4].try_into().unwrap());
        (0..8).fold(0u64, |sum, i| {
            let a = u64::from(m(2 * i).wrapping_add(self.nh_key[2 * i + shift]));
            let b = u64::from(m(2 * i + 1).wrapping_add(self.nh_key[2 * i + 1 + shift]));
            sum.wrapping_add(a.wrapping_mul(b))
        })
    }

    fn cut(&self, data: &[u8]) -> usize {
        let end = data.len().min(self.max);
        if data.len() <= self.min {
            return data.len();
        }
        let mut k = self.min;
        while k < end {
            let mut input = [0u8; 16];
            input[..8].copy_from_slice(&self.nh(data, k, 0).to_le_bytes());
            input[8..].copy_from_slice(&self.nh(data, k, 2).to_le_bytes());
            let mut block = Array::from(input);
            self.prf.encrypt_block(&mut block);
            let lo = u64::from_le_bytes(block[..8].try_into().unwrap());
            let hi = u64::from_le_bytes(block[8..].try_into().unwrap());
            let t = if k < self.avg {
                self.t_small
            } else {
                self.t_large
            };
            if lo < t {
                return k;
            }
            k += 1 + (hi % self.stride) as usize;
        }
        end
    }

    fn lengths(&self, data: &[u8]) -> Vec<usize> {
        lengths(data, |rest| self.cut(rest))
    }
}

/// Sizes that give v2 every stride from 1 to 64 (`avg - min` up to 300 KiB).
fn configs_v2() -> impl Strategy<Value = (usize, usize, usize)> {
    (64usize..4096, 1usize..300_000, 0usize..100_000).prop_map(|(min, da, dm)| {
        let avg = min + da;
        (min, avg, avg + dm)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn v2_equals_reference(
        key in any::<[u8; 32]>(),
        (min, avg, max) in configs_v2(),
        data in prop::collection::vec(any::<u8>(), 0..300_000),
    ) {
        let fast = Chunker::keyed_v2(&ChunkerKey::from_bytes(key), ChunkerConfig::new(min, avg, max).unwrap());
        let slow = Reference2::new(&key, min, avg, max);
        let got: Vec<usize> = fast.chunks(&data).map(|c| c.len).collect();
        prop_assert_eq!(got, slow.lengths(&data));
    }

    #[test]
    fn v2_equals_reference_low_entropy(
        key in any::<[u8; 32]>(),
        (min, avg, max) in configs(),
        data in prop::collection::vec(0u8..3, 0..20_000),
    ) {
        let fast = Chunker::keyed_v2(&ChunkerKey::from_bytes(key), ChunkerConfig::new(min, avg, max).unwrap());
        let slow = Reference2::new(&key, min, avg, max);
        let got: Vec<usize> = fast.chunks(&data).map(|c| c.len).collect();
        prop_assert_eq!(got, slow.lengths(&data));
    }
}

#[test]
fn v2_default_config_equals_reference() {
    let key = [0x5a; 32];
    let mut data = vec![0u8; 12 << 20];
    blake3::Hasher::new()
        .update(b"reference v2")
        .finalize_xof()
        .fill(&mut data);
    let c = ChunkerConfig::DEFAULT;
    let fast = Chunker::keyed_v2(&ChunkerKey::from_bytes(key), c);
    let slow = Reference2::new(&key, c.min(), c.avg(), c.max());
    let got: Vec<usize> = fast.chunks(&data).map(|c| c.len).collect();
    assert!(got.len() > 8);
    assert_eq!(got, slow.lengths(&data));
}
