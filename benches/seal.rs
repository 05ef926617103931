//! Sealing and opening 1 MiB blocks, single core, random and text-like data, both AEADs, and each
//! stage alone in the same run (keyed BLAKE3, zstd, the AEAD), so the closing note can compare
//! seal/open against the limit their stages set (1 / sum of 1/throughput).
//!
//! `cargo bench --bench seal` (add `RUSTFLAGS="-C target-cpu=native"` for the VAES build).

// A benchmark: it prints the compression ratios it measured, and a failure may panic.
#![allow(clippy::print_stderr, clippy::unwrap_used, clippy::cast_precision_loss)]

mod common;

use cairn::keys::ArchiveKey;
use cairn::seal::hazmat::aead;
use cairn::seal::{Algorithm, ArchiveId, BlockKind, SealConfig, Sealer};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const LEN: usize = 1 << 20;

fn seal(c: &mut Criterion) {
    let inputs = [
        ("random", common::random_bytes(3, LEN)),
        ("text", common::text_bytes(3, LEN)),
    ];
    let root = ArchiveKey::from_bytes([1; 32]);
    let archive = ArchiveId::from_bytes([2; 16]);
    let id_key = root.block_id_key();
    let key = [7u8; 32];

    let mut g = c.benchmark_group("seal");
    g.throughput(Throughput::Bytes(LEN as u64));
    for (name, data) in &inputs {
        for (alg_name, alg) in [
            ("aes256gcm", Algorithm::Aes256Gcm),
            ("xchacha", Algorithm::XChaCha20Poly1305),
        ] {
            let sealer = Sealer::new(&root, archive, SealConfig::new(alg, 3).unwrap());
            let sealed = sealer.seal(BlockKind::DATA, data).unwrap();
            g.bench_function(format!("seal/{alg_name}/{name}"), |b| {
                b.iter(|| sealer.seal(BlockKind::DATA, black_box(data)).unwrap())
            });
            g.bench_function(format!("open/{alg_name}/{name}"), |b| {
                b.iter(|| {
                    sealer
                        .open(BlockKind::DATA, &sealed.id(), black_box(sealed.as_bytes()))
                        .unwrap()
                })
            });
        }
        // Stages alone.
        g.bench_function(format!("stage/blake3_keyed/{name}"), |b| {
            b.iter(|| blake3::keyed_hash(id_key.expose_secret(), black_box(data)))
        });
        for level in [1, 3] {
            let frame = zstd::bulk::compress(data, level).unwrap();
            eprintln!(
                "zstd level {level} on {name}: ratio {:.3}",
                frame.len() as f64 / LEN as f64
            );
            if *name == "text" {
                g.bench_function(format!("stage/zstd{level}_compress/{name}"), |b| {
                    b.iter(|| zstd::bulk::compress(black_box(data), level).unwrap())
                });
            }
            if level == 3 && *name == "text" {
                g.bench_function(format!("stage/zstd_decompress/{name}"), |b| {
                    b.iter(|| cairn::seal::decompress_bounded(black_box(&frame), LEN).unwrap())
                });
            }
        }
        // The AEADs alone: in place on one reused buffer, 128-byte AAD as in sealed blocks.
        let aad = [0u8; 128];
        let mut buf = data.clone();
        g.bench_function(format!("stage/aes256gcm_seal/{name}"), |b| {
            b.iter(|| aead::aes256gcm_seal_detached(&key, &[0; 12], &aad, black_box(&mut buf)))
        });
        let ct = aead::aes256gcm_seal(&key, &[0; 12], &aad, data);
        let mut opened = Vec::with_capacity(ct.len());
        g.bench_function(format!("stage/aes256gcm_open/{name}"), |b| {
            b.iter(|| {
                // Open needs the ciphertext back each time: time one copy in with it, as `open` pays.
                opened.clear();
                opened.extend_from_slice(&ct);
                aead::aes256gcm_open_in_place(&key, &[0; 12], &aad, black_box(&mut opened)).unwrap()
            })
        });
        g.bench_function(format!("stage/xchacha_seal/{name}"), |b| {
            b.iter(|| aead::xchacha_seal_detached(&key, &[0; 24], &aad, black_box(&mut buf)))
        });
        let xct = aead::xchacha_seal(&key, &[0; 24], &aad, data);
        g.bench_function(format!("stage/xchacha_open/{name}"), |b| {
            b.iter(|| {
                opened.clear();
                opened.extend_from_slice(&xct);
                aead::xchacha_open_in_place(&key, &[0; 24], &aad, black_box(&mut opened)).unwrap()
            })
        });
        g.bench_function(format!("stage/memcpy/{name}"), |b| {
            b.iter(|| black_box(data).to_vec())
        });
    }
    g.finish();
}

criterion_group!(benches, seal);
criterion_main!(benches);
