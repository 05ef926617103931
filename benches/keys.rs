//! Cost of the key hierarchy: generating a root key and deriving every subkey.
//!
//! `cargo bench --bench keys`

use cairn::keys::ArchiveKey;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn keys(c: &mut Criterion) {
    let root = ArchiveKey::from_bytes([7; 32]);
    c.bench_function("keys/generate", |b| b.iter(ArchiveKey::generate));
    c.bench_function("keys/derive_all", |b| {
        b.iter(|| {
            let r = black_box(&root);
            (
                r.chunker_key(),
                r.block_id_key(),
                r.block_key(),
                r.snapshot_key(),
                r.fingerprint(),
            )
        })
    });
}

criterion_group!(benches, keys);
criterion_main!(benches);
