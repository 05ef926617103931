//! The CPU floor of a first backup: the composed kernels alone (keyed chunking, keyed BLAKE3 id,
//! zstd-3 with the incompressibility probe, Padmé padding and AES-256-GCM), one thread, over
//! every file of a folder already in memory. Files shorter than `PACK_BELOW` are packed as the
//! backup packs them (end to end, a pack closed at `PACK_TARGET`; each file also gets its own
//! id). No walk, no reads, no store: what a backup of that folder cannot go below, in CPU
//! seconds.
//!
//! Then the same work again, split over every core (`--threads N` to choose), still from memory:
//! its wall time is the floor for that many cores on this machine, measured rather than divided,
//! because two busy cores here each run slower than one alone (shared caches, memory bandwidth,
//! a hypervisor's scheduling). `benches/peers/run.sh` reports it beside the tools.
//!
//! `cargo run --locked --release --example kernel_floor -- DIR [--threads N]`

// A binary: printing is its job; bad arguments end it with a message.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]
#![allow(clippy::cast_precision_loss)]

use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use cairn::backup::{PACK_BELOW, PACK_TARGET};
use cairn::chunk::{Chunker, ChunkerConfig};
use cairn::keys::ArchiveKey;
use cairn::seal::{ArchiveId, BlockKind, SealConfig, Sealer};

fn files(dir: &std::path::Path, out: &mut Vec<Vec<u8>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            files(&entry.path(), out);
        } else if kind.is_file() {
            out.push(std::fs::read(entry.path()).unwrap());
        }
    }
}

fn usage() -> ! {
    eprintln!("usage: kernel_floor DIR [--threads N]");
    std::process::exit(2);
}

/// Runs `work(i)` for every `i` in `0..n` on `threads` threads (each takes the next index) and
/// returns the seconds the threads were busy, summed.
fn for_each_parallel(threads: usize, n: usize, work: impl Fn(usize) + Sync) -> f64 {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let t = Instant::now();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        work(i);
                    }
                    t.elapsed().as_secs_f64()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    })
}

/// The files a backup packs (not empty, shorter than `PACK_BELOW`), and those it chunks.
fn split(data: &[Vec<u8>]) -> (Vec<&[u8]>, Vec<&[u8]>) {
    let small = data
        .iter()
        .filter(|f| !f.is_empty() && f.len() < PACK_BELOW)
        .map(Vec::as_slice)
        .collect();
    let large = data
        .iter()
        .filter(|f| f.len() >= PACK_BELOW)
        .map(Vec::as_slice)
        .collect();
    (small, large)
}

/// The runs of consecutive small files that make one pack each: a pack closes once it holds
/// `PACK_TARGET` bytes, as the backup closes them.
fn pack_runs(small: &[&[u8]]) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let (mut first, mut filled) = (0, 0);
    for (i, f) in small.iter().enumerate() {
        filled += f.len();
        if filled >= PACK_TARGET {
            runs.push(first..i + 1);
            (first, filled) = (i + 1, 0);
        }
    }
    if first < small.len() {
        runs.push(first..small.len());
    }
    runs
}

/// The single-threaded pass's work on `threads` threads: small files named and packed (one
/// pack per task), large files chunked, then every block named and sealed. Returns (wall
/// seconds, busy thread-seconds, blocks).
fn parallel(
    threads: usize,
    (small, large): (&[&[u8]], &[&[u8]]),
    runs: &[Range<usize>],
    chunker: &Chunker,
    sealer: &Sealer,
) -> (f64, f64, usize) {
    let start = Instant::now();
    let packs = Mutex::new(vec![Vec::new(); runs.len()]);
    let mut busy = for_each_parallel(threads, runs.len(), |r| {
        let mut pack = Vec::with_capacity(PACK_TARGET + PACK_BELOW);
        for file in &small[runs[r].clone()] {
            std::hint::black_box(sealer.block_id(BlockKind::DATA, file));
            pack.extend_from_slice(file);
        }
        packs.lock().unwrap()[r] = pack;
    });
    let packs = packs.into_inner().unwrap();

    let cuts = Mutex::new(Vec::new());
    busy += for_each_parallel(threads, large.len(), |f| {
        let file = large[f];
        let mine: Vec<&[u8]> = chunker
            .chunks(file)
            .map(|c| &file[c.offset..c.offset + c.len])
            .collect();
        cuts.lock().unwrap().extend(mine);
    });
    let mut blocks: Vec<&[u8]> = packs.iter().map(Vec::as_slice).collect();
    blocks.extend(cuts.into_inner().unwrap());

    busy += for_each_parallel(threads, blocks.len(), |b| {
        let block = sealer.identify_borrowed(BlockKind::DATA, blocks[b]);
        std::hint::black_box(sealer.seal_identified(&block).unwrap());
    });
    (start.elapsed().as_secs_f64(), busy, blocks.len())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else { usage() };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = match (args.next().as_deref(), args.next()) {
        (None, _) => cores,
        (Some("--threads"), Some(n)) => {
            n.parse().ok().filter(|&n| n > 0).unwrap_or_else(|| usage())
        }
        _ => usage(),
    };
    let mut data = Vec::new();
    files(std::path::Path::new(&dir), &mut data);
    let total: usize = data.iter().map(Vec::len).sum();
    let key = ArchiveKey::from_bytes([1; 32]);
    let chunker = Chunker::new(&key.chunker_key(), ChunkerConfig::DEFAULT);
    let sealer = Sealer::new(&key, ArchiveId::from_bytes([2; 16]), SealConfig::default());

    // Small files into packs, in walk order, each named as the backup names it.
    let (small, large) = split(&data);
    let runs = pack_runs(&small);
    let t = Instant::now();
    let mut packs = Vec::with_capacity(runs.len());
    let mut file_id_s = 0.0;
    for run in &runs {
        let mut pack = Vec::with_capacity(PACK_TARGET + PACK_BELOW);
        for file in &small[run.clone()] {
            let t = Instant::now();
            std::hint::black_box(sealer.block_id(BlockKind::DATA, file));
            file_id_s += t.elapsed().as_secs_f64();
            pack.extend_from_slice(file);
        }
        packs.push(pack);
    }
    let pack_s = t.elapsed().as_secs_f64();

    let mut chunks: Vec<&[u8]> = packs.iter().map(Vec::as_slice).collect();
    let t = Instant::now();
    for file in &large {
        chunks.extend(
            chunker
                .chunks(file)
                .map(|c| &file[c.offset..c.offset + c.len]),
        );
    }
    let chunk_s = t.elapsed().as_secs_f64();

    // Per block, as the pipeline does it on a local repository: name it (keyed BLAKE3, in
    // place), seal it, drop the sealed bytes; the allocator reuses the memory as it would in a
    // backup.
    let (mut id_s, mut seal_s, mut sealed, mut blocks) = (0.0, 0.0, 0usize, 0usize);
    for c in &chunks {
        let t = Instant::now();
        let block = sealer.identify_borrowed(BlockKind::DATA, c);
        id_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        sealed += sealer.seal_identified(&block).unwrap().as_bytes().len();
        seal_s += t.elapsed().as_secs_f64();
        blocks += 1;
    }

    let sum = pack_s + chunk_s + id_s + seal_s;
    println!(
        "{} files ({} packed into {} packs), {:.0} MiB, {} blocks, sealed {:.0} MiB",
        data.len(),
        small.len(),
        packs.len(),
        total as f64 / 1048576.0,
        blocks,
        sealed as f64 / 1048576.0
    );
    println!(
        "one thread: pack {pack_s:.2} s (file ids {file_id_s:.2} s), chunk {chunk_s:.2} s, id {id_s:.2} s, seal (zstd-3 + pad + AES-256-GCM) {seal_s:.2} s"
    );
    println!(
        "floor: {sum:.2} CPU-s; {:.2} s of wall time on {cores} cores if perfectly parallel",
        sum / cores as f64
    );
    let (wall, busy, parallel_blocks) =
        parallel(threads, (&small, &large), &runs, &chunker, &sealer);
    assert_eq!(parallel_blocks, blocks, "both passes cut the same blocks");
    println!(
        "{threads} threads: wall {wall:.2} s, busy {busy:.2} thread-s ({:.2}x the one-thread pass)",
        busy / sum
    );
}
