//! Chunking throughput, single core, 256 MiB inputs: the keyed v2 (default) and v1 chunkers, the unkeyed `fastcdc`
//! crate (FastCDC 2020) at the same sizes, and BLAKE3 hashing as a reference, in one run.
//!
//! `cargo bench --bench chunk` (set `CAIRN_BENCH_MIB` to change the input size).

mod common;

use cairn::chunk::{Chunker, ChunkerConfig};
use cairn::keys::ArchiveKey;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn input_len() -> usize {
    std::env::var("CAIRN_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(256)
        << 20
}

fn chunking(c: &mut Criterion) {
    let len = input_len();
    let config = ChunkerConfig::DEFAULT;
    let key = ArchiveKey::from_bytes([7; 32]).chunker_key();
    let keyed_v1 = Chunker::keyed_v1(&key, config);
    let keyed_v2 = Chunker::keyed_v2(&key, config);
    let inputs = [
        ("random", common::random_bytes(1, len)),
        ("text", common::text_bytes(1, len)),
    ];
    let mut group = c.benchmark_group("chunk");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(len as u64));
    for (name, data) in &inputs {
        group.bench_function(format!("keyed_v1/{name}"), |b| {
            b.iter(|| keyed_v1.chunks(black_box(data)).count())
        });
        group.bench_function(format!("keyed_v2/{name}"), |b| {
            b.iter(|| keyed_v2.chunks(black_box(data)).count())
        });
        group.bench_function(format!("fastcdc_crate_2020/{name}"), |b| {
            b.iter(|| {
                fastcdc::v2020::FastCDC::new(
                    black_box(data),
                    config.min(),
                    config.avg(),
                    config.max(),
                )
                .count()
            })
        });
        group.bench_function(format!("blake3/{name}"), |b| {
            b.iter(|| blake3::hash(black_box(data)))
        });
    }
    group.finish();
}

criterion_group!(benches, chunking);
criterion_main!(benches);
