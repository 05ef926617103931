//! Measures the archive's index at scale: appends N records (default 10 million, empty
//! payloads: the most index entries per byte of log) to a local directory, reopens it, and
//! reports heap bytes per indexed record and lookup latency percentiles (hits and misses).
//!
//! `cargo run --release --example archive_index [-- N]`

// An example binary: printing is its job, and a failure should stop it.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]

use std::time::Instant;

use cairn::archive::{Archive, Config, DirStorage};

fn key(i: u64) -> [u8; 32] {
    *blake3::hash(&i.to_le_bytes()).as_bytes()
}

/// The value at `per_mille`/1000 of a sorted sample.
fn percentile(sorted: &[u128], per_mille: usize) -> u128 {
    sorted[(sorted.len() - 1) * per_mille / 1000]
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let dir = tempfile::tempdir_in(".").unwrap();
    let config = Config::new(*b"index bench arch");
    let started = Instant::now();
    {
        let (mut log, _) = Archive::open(DirStorage::open(dir.path()).unwrap(), config).unwrap();
        for i in 0..n {
            log.append(1, &key(i), &[]).unwrap();
            if i % 100_000 == 99_999 {
                log.commit().unwrap();
            }
        }
        log.commit().unwrap();
    }
    println!(
        "appended {n} records in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let (log, _) = Archive::open(DirStorage::open(dir.path()).unwrap(), config).unwrap();
    println!(
        "reopened in {:.2} s: {} sealed segments",
        started.elapsed().as_secs_f64(),
        log.sealed_segments()
    );
    let (heap, entries) = log.sealed_index_memory();
    println!(
        "sealed index: {entries} entries, {heap} heap bytes = {:.2} bytes per indexed record",
        heap as f64 / entries.max(1) as f64
    );
    for (label, offset) in [("hit", 0u64), ("miss", u64::MAX / 2)] {
        let mut lat = Vec::with_capacity(100_000);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = key(if offset == 0 { x % n } else { offset + x % n });
            let t = Instant::now();
            let found = log.locate(&k).unwrap();
            lat.push(t.elapsed().as_nanos());
            assert_eq!(found.is_some(), offset == 0);
        }
        lat.sort_unstable();
        println!(
            "lookup {label}: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
            percentile(&lat, 500) as f64 / 1e3,
            percentile(&lat, 990) as f64 / 1e3,
            percentile(&lat, 999) as f64 / 1e3,
            *lat.last().unwrap() as f64 / 1e3
        );
    }
}
