//! Chunk-size distribution, edit locality and throughput of the chunkers, on generated data.
//!
//! `cargo run --locked --release --example chunk_stats -- [MIN AVG MAX] [--mib N] [--trials T]`
//!
//! Prints, for the keyed v2 (default) and v1 chunkers and the unkeyed `fastcdc` crate at the same sizes, on random
//! and on text-like data: chunk count, mean and standard deviation of lengths against the target
//! average; the B-17 edit figure (one byte inserted or deleted at a random place of a 16 MiB
//! input: chunks of the new version absent from the old, averaged over T trials); and a median
//! throughput over 5 runs (single core).

// A binary: printing is its job; statistics cast bounded values; bad arguments may panic with a message.
#![allow(clippy::print_stdout, clippy::unwrap_used)]
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]

use std::collections::HashSet;
use std::time::Instant;

use cairn::chunk::{Chunker, ChunkerConfig};
use cairn::keys::ArchiveKey;

#[path = "../benches/common/mod.rs"]
mod common;

fn arg_value(args: &[String], name: &str) -> Option<usize> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn lens(chunker: &Chunker, data: &[u8]) -> Vec<usize> {
    chunker.chunks(data).map(|c| c.len).collect()
}

fn chunk_set(chunker: &Chunker, data: &[u8]) -> HashSet<blake3::Hash> {
    chunker
        .chunks(data)
        .map(|c| blake3::hash(&data[c.offset..c.offset + c.len]))
        .collect()
}

/// Average number of new chunks after a one-byte insertion or deletion.
fn edit_figure(chunker: &Chunker, data: &[u8], trials: usize, seed: u64) -> f64 {
    let old = chunk_set(chunker, data);
    let mut rng = seed;
    let mut total = 0usize;
    for t in 0..trials {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pos = (rng >> 16) as usize % data.len();
        let mut edited = data.to_vec();
        if t % 2 == 0 {
            edited.insert(pos, (rng >> 8) as u8);
        } else {
            edited.remove(pos);
        }
        let new = chunk_set(chunker, &edited);
        total += new.difference(&old).count();
    }
    total as f64 / trials as f64
}

/// Bytes of new chunks after 8 random edits (insert, delete or overwrite of 1 B to 64 KiB), per
/// edit, averaged over `trials` rounds: the upload cost of editing a large file.
fn dedup_cost(chunker: &Chunker, data: &[u8], trials: usize, seed: u64) -> f64 {
    let old = chunk_set(chunker, data);
    let mut rng = seed;
    let mut next = move || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 16) as usize
    };
    let mut total = 0usize;
    for _ in 0..trials {
        let mut edited = data.to_vec();
        for _ in 0..8 {
            let pos = next() % edited.len();
            let len = 1 + next() % (64 << 10);
            match next() % 3 {
                0 => {
                    let blob: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                    edited.splice(pos..pos, blob);
                }
                1 => {
                    edited.drain(pos..(pos + len).min(edited.len()));
                }
                _ => {
                    for b in edited.iter_mut().skip(pos).take(len) {
                        *b = next() as u8;
                    }
                }
            }
        }
        total += chunker
            .chunks(&edited)
            .filter(|c| !old.contains(&blake3::hash(&edited[c.offset..c.offset + c.len])))
            .map(|c| c.len)
            .sum::<usize>();
    }
    total as f64 / (trials * 8) as f64
}

fn median_throughput(chunker: &Chunker, data: &[u8]) -> f64 {
    let mut rates: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let n = chunker.chunks(std::hint::black_box(data)).count();
            std::hint::black_box(n);
            data.len() as f64 / t.elapsed().as_secs_f64() / (1u64 << 30) as f64
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nums: Vec<usize> = args.iter().take(3).filter_map(|a| a.parse().ok()).collect();
    let config = if nums.len() == 3 {
        ChunkerConfig::new(nums[0], nums[1], nums[2]).unwrap()
    } else {
        ChunkerConfig::DEFAULT
    };
    let mib = arg_value(&args, "--mib").unwrap_or(256);
    let trials = arg_value(&args, "--trials").unwrap_or(40);
    let key = ArchiveKey::from_bytes([7; 32]).chunker_key();
    let v1 = Chunker::keyed_v1(&key, config);
    let v2 = Chunker::keyed_v2(&key, config);
    let fast = cairn::chunk::hazmat::unkeyed_fastcdc2020(config).ok();
    println!(
        "sizes min/avg/max = {}/{}/{}, {mib} MiB per input, {trials} edit trials on 16 MiB",
        config.min(),
        config.avg(),
        config.max()
    );
    for (name, data) in [
        ("random", common::random_bytes(1, mib << 20)),
        ("text", common::text_bytes(1, mib << 20)),
    ] {
        for (label, chunker) in [
            ("keyed_v2", Some(&v2)),
            ("keyed_v1", Some(&v1)),
            ("fastcdc_2020", fast.as_ref()),
        ] {
            let Some(chunker) = chunker else { continue };
            let l = lens(chunker, &data);
            let n = l.len() as f64;
            let mean = l.iter().sum::<usize>() as f64 / n;
            let sd = (l.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
            let edit = edit_figure(chunker, &data[..(16 << 20).min(data.len())], trials, 42);
            let gib = median_throughput(chunker, &data);
            let cost = dedup_cost(
                chunker,
                &data[..(64 << 20).min(data.len())],
                trials.div_ceil(8),
                7,
            );
            println!(
                "{name:>6} {label:<13} chunks {:>6}  mean {:>9.0} ({:+.1}% vs avg)  sd {:>8.0} ({:.2} of avg)  edit {edit:.2} chunks  upload/edit {:.2} MiB  {gib:.2} GiB/s",
                l.len(),
                mean,
                (mean / config.avg() as f64 - 1.0) * 100.0,
                sd,
                sd / config.avg() as f64,
                cost / (1u64 << 20) as f64
            );
        }
    }
}
