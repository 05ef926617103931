//! The CPU floor of a first backup: the composed kernels alone (keyed chunking, keyed BLAKE3 id,
//! zstd-3 with the incompressibility probe, Padmé padding and AES-256-GCM), one thread, over
//! every file of a folder already in memory. Files shorter than `PACK_BELOW` are packed as the
//! backup packs them (end to end, a pack closed at `PACK_TARGET`; each file also gets its own
//! id). No walk, no reads, no store: what a backup of that folder cannot go below, in CPU
//! seconds.
//!
//! `cargo run --locked --release --example kernel_floor -- DIR`

// A binary: printing is its job; bad arguments end it with a message.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]
#![allow(clippy::cast_precision_loss)]

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

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: kernel_floor DIR");
        std::process::exit(2);
    };
    let mut data = Vec::new();
    files(std::path::Path::new(&dir), &mut data);
    let total: usize = data.iter().map(Vec::len).sum();
    let key = ArchiveKey::from_bytes([1; 32]);
    let chunker = Chunker::new(&key.chunker_key(), ChunkerConfig::DEFAULT);
    let sealer = Sealer::new(&key, ArchiveId::from_bytes([2; 16]), SealConfig::default());

    // Small files into packs, in walk order, each named as the backup names it.
    let t = Instant::now();
    let new_pack = || Vec::with_capacity(PACK_TARGET + PACK_BELOW);
    let (mut packs, mut open, mut packed) = (Vec::new(), new_pack(), 0usize);
    let mut file_id_s = 0.0;
    for file in data
        .iter()
        .filter(|f| !f.is_empty() && f.len() < PACK_BELOW)
    {
        let t = Instant::now();
        std::hint::black_box(sealer.block_id(BlockKind::DATA, file));
        file_id_s += t.elapsed().as_secs_f64();
        open.extend_from_slice(file);
        packed += 1;
        if open.len() >= PACK_TARGET {
            packs.push(std::mem::replace(&mut open, new_pack()));
        }
    }
    if !open.is_empty() {
        packs.push(open);
    }
    let pack_s = t.elapsed().as_secs_f64();

    let mut chunks: Vec<&[u8]> = packs.iter().map(Vec::as_slice).collect();
    let t = Instant::now();
    for file in data.iter().filter(|f| f.len() >= PACK_BELOW) {
        chunks.extend(
            chunker
                .chunks(file)
                .map(|c| &file[c.offset..c.offset + c.len]),
        );
    }
    let chunk_s = t.elapsed().as_secs_f64();

    // Per block, as the pipeline does it: name it (keyed BLAKE3 over a copy of the chunk),
    // seal it, drop both; the allocator reuses the memory as it would in a backup.
    let (mut id_s, mut seal_s, mut sealed, mut blocks) = (0.0, 0.0, 0usize, 0usize);
    for c in &chunks {
        let t = Instant::now();
        let block = sealer.identify(BlockKind::DATA, c.to_vec());
        id_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        sealed += sealer.seal_identified(&block).unwrap().as_bytes().len();
        seal_s += t.elapsed().as_secs_f64();
        blocks += 1;
    }

    let sum = pack_s + chunk_s + id_s + seal_s;
    println!(
        "{} files ({packed} packed into {} packs), {:.0} MiB, {} blocks, sealed {:.0} MiB",
        data.len(),
        packs.len(),
        total as f64 / 1048576.0,
        blocks,
        sealed as f64 / 1048576.0
    );
    println!(
        "one thread: pack {pack_s:.2} s (file ids {file_id_s:.2} s), chunk {chunk_s:.2} s, id (+ copy) {id_s:.2} s, seal (zstd-3 + pad + AES-256-GCM) {seal_s:.2} s"
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "floor: {sum:.2} CPU-s; {:.2} s of wall time on {cores} cores if perfectly parallel",
        sum / cores as f64
    );
}
