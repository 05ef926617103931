//! A deliberately naive implementation of `docs/format/chunk.md` (v1), written from the spec:
//! no batching, no rolling, the gear hash recomputed from the 64-byte window at every position.
//! The optimised chunker must agree with it on every input.

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
        let mut out = vec![];
        let mut at = 0;
        while at < data.len() {
            let n = self.cut(&data[at..]);
            out.push(n);
            at += n;
        }
        out
    }
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
        let fast = Chunker::new(&ChunkerKey::from_bytes(key), ChunkerConfig::new(min, avg, max).unwrap());
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
        let fast = Chunker::new(&ChunkerKey::from_bytes(key), ChunkerConfig::new(min, avg, max).unwrap());
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
    let fast = Chunker::new(&ChunkerKey::from_bytes(key), c);
    let slow = Reference::new(&key, c.min(), c.avg(), c.max());
    let got: Vec<usize> = fast.chunks(&data).map(|c| c.len).collect();
    assert_eq!(got, slow.lengths(&data));
}
