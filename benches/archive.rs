//! The archive log: append to memory and to a local directory with group commit (and, in the
//! same run, a raw baseline: plain sequential writes of the same bytes with the same fsyncs),
//! and a full verify scan. Bytes per second of payload. Compaction (issue 28): one sealed 64 MiB
//! segment in a local directory with a fifth of its records elided, next to the raw cost of
//! reading the same file and writing a copy with one fsync, in the same run.
//!
//! `cargo bench --bench archive`  (index lookups at 10 million records:
//! `cargo run --release --example archive_index`)

// A benchmark: a failure may panic.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::io::Write;
use std::time::Duration;

use cairn::archive::{Archive, Config, DirStorage, MemoryStorage};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

mod common;

const RECORD: usize = 1 << 20; // a typical sealed block
const BATCH: usize = 16; // records per commit (16 MiB group commit)

fn records(total: usize) -> Vec<Vec<u8>> {
    (0..total / RECORD)
        .map(|i| common::random_bytes(i as u64, RECORD))
        .collect()
}

fn key(i: usize) -> [u8; 32] {
    *blake3::hash(&(i as u64).to_le_bytes()).as_bytes()
}

fn append_all<S: cairn::archive::Storage>(storage: S, data: &[Vec<u8>]) {
    let (mut log, _) = Archive::open(storage, Config::new(*b"bench archive id")).unwrap();
    for (i, r) in data.iter().enumerate() {
        log.append(1, &key(i), r).unwrap();
        if (i + 1) % BATCH == 0 {
            log.commit().unwrap();
        }
    }
    log.commit().unwrap();
}

/// A storage that keeps nothing: isolates the log's own cost (framing, CRC32C, the BLAKE3
/// chain, indexing) from the cost of copying bytes into fresh memory. Measurement only.
#[derive(Clone, Default)]
struct Discard;

struct DiscardWriter;

impl cairn::archive::SegmentWriter for DiscardWriter {
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        std::hint::black_box(buf);
        Ok(())
    }
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl cairn::archive::Storage for Discard {
    type Writer = DiscardWriter;
    fn create(&self, _: &str) -> std::io::Result<DiscardWriter> {
        Ok(DiscardWriter)
    }
    fn append(&self, _: &str) -> std::io::Result<DiscardWriter> {
        Ok(DiscardWriter)
    }
    fn len(&self, _: &str) -> std::io::Result<u64> {
        Ok(0)
    }
    fn read_at(&self, _: &str, _: u64, _: &mut [u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn truncate(&self, _: &str, _: u64) -> std::io::Result<()> {
        Ok(())
    }
    fn seal(&self, _: &str, _: &str) -> std::io::Result<()> {
        Ok(())
    }
    fn remove(&self, _: &str) -> std::io::Result<()> {
        Ok(())
    }
    fn list(&self) -> std::io::Result<Vec<String>> {
        Ok(Vec::new())
    }
}

fn bench(c: &mut Criterion) {
    let mem_data = records(256 << 20);
    let mut g = c.benchmark_group("archive");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Bytes((mem_data.len() * RECORD) as u64));
    g.bench_function("append_log_only_256MiB", |b| {
        b.iter(|| append_all(Discard, &mem_data))
    });
    // The floor for any in-memory storage: copying the same bytes into fresh memory.
    g.bench_function("copy_into_fresh_memory_256MiB", |b| {
        b.iter(|| {
            let copies: Vec<Vec<u8>> = mem_data.iter().map(|r| r.to_vec()).collect();
            std::hint::black_box(copies)
        })
    });
    g.bench_function("append_memory_256MiB", |b| {
        b.iter_batched(
            MemoryStorage::new,
            |s| append_all(s, &mem_data),
            BatchSize::PerIteration,
        )
    });

    // The same, handing the payloads over (the server's path for upload bodies): no copy.
    g.bench_function("append_memory_owned_256MiB", |b| {
        b.iter_batched(
            || (MemoryStorage::new(), mem_data.clone()),
            |(s, data)| {
                let (mut log, _) = Archive::open(s, Config::new(*b"bench archive id")).unwrap();
                for (i, r) in data.into_iter().enumerate() {
                    log.append_owned(1, &key(i), r).unwrap();
                    if (i + 1) % BATCH == 0 {
                        log.commit().unwrap();
                    }
                }
                log.commit().unwrap();
                log
            },
            BatchSize::PerIteration,
        )
    });

    let file_data = records(128 << 20);
    g.throughput(Throughput::Bytes((file_data.len() * RECORD) as u64));
    let base = std::env::current_dir()
        .unwrap()
        .join("target")
        .join("bench-archive");
    std::fs::create_dir_all(&base).unwrap();
    g.bench_function("append_dir_group_commit_128MiB", |b| {
        b.iter_batched(
            || {
                let d = tempfile::tempdir_in(&base).unwrap();
                let s = DirStorage::open(d.path().join("a")).unwrap();
                (d, s)
            },
            |(d, s)| {
                append_all(s, &file_data);
                drop(d);
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("raw_write_fsync_baseline_128MiB", |b| {
        b.iter_batched(
            || tempfile::tempdir_in(&base).unwrap(),
            |d| {
                let mut f = std::fs::File::create(d.path().join("raw")).unwrap();
                for (i, r) in file_data.iter().enumerate() {
                    f.write_all(r).unwrap();
                    if (i + 1) % BATCH == 0 {
                        f.sync_data().unwrap();
                    }
                }
                f.sync_data().unwrap();
                drop(d);
            },
            BatchSize::PerIteration,
        )
    });

    let storage = MemoryStorage::new();
    append_all(storage.clone(), &mem_data);
    let (mut log, _) = Archive::open(storage, Config::new(*b"bench archive id")).unwrap();
    g.throughput(Throughput::Bytes((mem_data.len() * RECORD) as u64));
    g.bench_function("verify_memory_256MiB", |b| {
        b.iter(|| {
            let r = log.verify(|_, _, _| Ok(())).unwrap();
            assert!(r.is_clean());
        })
    });
    g.finish();
}

/// Compacting one sealed 64 MiB segment (64 records of 1 MiB) on a local directory, a fifth of
/// its records dead, against reading the file and writing a fsynced copy (what compaction cannot
/// do without). Each iteration starts from a fresh copy of the same archive.
fn compaction(c: &mut Criterion) {
    let mut g = c.benchmark_group("compaction");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    let base = std::env::current_dir()
        .unwrap()
        .join("target")
        .join("bench-archive");
    std::fs::create_dir_all(&base).unwrap();
    let template = tempfile::tempdir_in(&base).unwrap();
    let config = Config::new(*b"bench archive id")
        .with_segment_target(64 << 20)
        .unwrap();
    {
        let (mut log, _) =
            Archive::open(DirStorage::open(template.path()).unwrap(), config).unwrap();
        for (i, r) in records(64 << 20).iter().enumerate() {
            log.append(1, &key(i), r).unwrap();
            if (i + 1) % BATCH == 0 {
                log.commit().unwrap();
            }
        }
        log.commit().unwrap();
        assert_eq!(log.sealed_segments(), 1);
    }
    let copy = || {
        let d = tempfile::tempdir_in(&base).unwrap();
        for e in std::fs::read_dir(template.path()).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), d.path().join(e.file_name())).unwrap();
        }
        d
    };
    let segment = cairn::archive::segment_name(0, false);
    g.throughput(Throughput::Bytes(64 << 20));
    g.bench_function("compact_dir_64MiB_fifth_dead", |b| {
        b.iter_batched(
            copy,
            |d| {
                let (mut log, _) =
                    Archive::open(DirStorage::open(d.path()).unwrap(), config).unwrap();
                let dead: std::collections::HashSet<[u8; 32]> =
                    (0..64).step_by(5).map(key).collect();
                let done = log.compact(0, |k, _| dead.contains(k)).unwrap();
                assert_eq!(done.elided, 13);
                drop(log);
                drop(d);
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("raw_read_and_fsynced_copy_baseline_64MiB", |b| {
        b.iter_batched(
            copy,
            |d| {
                let bytes = std::fs::read(d.path().join(&segment)).unwrap();
                let mut f = std::fs::File::create(d.path().join("copy")).unwrap();
                f.write_all(&bytes).unwrap();
                f.sync_data().unwrap();
                drop(d);
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench, compaction);
criterion_main!(benches);
