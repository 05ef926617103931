//! A tour of the Cairn libraries that exist so far, run end to end on real data.
//!
//! `cargo run --locked --release --example tour [PATH]`
//!
//! Today it creates an archive root key, derives its subkeys, and chunks a file (PATH, or 48 MiB of
//! generated data) with the keyed chunker, then shows that a one-byte edit changes one chunk. Each
//! library adds its step as it lands; the agent/server quickstart replaces this tour as the README's
//! main command.

#![allow(clippy::print_stdout)] // a binary: printing is its job

use std::collections::HashSet;

use cairn::chunk::{Chunker, ChunkerConfig};
use cairn::keys::ArchiveKey;
use cairn::seal::{ArchiveId, BlockKind, SealConfig, SealedHeader, Sealer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = ArchiveKey::generate()?;
    println!("cairn tour");
    println!("  archive key generated from the OS CSPRNG");
    println!("  fingerprint (public)      {}", root.fingerprint());
    // Subkeys are printed by their Debug form, which is redacted: this is what a log line shows.
    println!("  chunker key               {:?}", root.chunker_key());
    println!("  block-id key              {:?}", root.block_id_key());
    println!("  block-encryption key      {:?}", root.block_key());
    println!("  snapshot key              {:?}", root.snapshot_key());

    let data = match std::env::args_os().nth(1) {
        Some(path) => std::fs::read(&path)?,
        None => {
            let mut data = vec![0u8; 48 << 20];
            blake3::Hasher::new()
                .update(b"cairn tour")
                .finalize_xof()
                .fill(&mut data);
            data
        }
    };
    let chunker = Chunker::new(&root.chunker_key(), ChunkerConfig::DEFAULT);
    let start = std::time::Instant::now();
    let chunks: Vec<_> = chunker.chunks(&data).collect();
    let took = start.elapsed();
    let ids = |d: &[u8]| -> HashSet<blake3::Hash> {
        chunker
            .chunks(d)
            .map(|c| blake3::hash(&d[c.offset..c.offset + c.len]))
            .collect()
    };
    println!(
        "  chunked {} bytes into {} chunks (keyed v1, 512 KiB/1 MiB/8 MiB) in {:.0} ms",
        data.len(),
        chunks.len(),
        took.as_secs_f64() * 1e3
    );
    if !data.is_empty() {
        let mut edited = data.clone();
        edited.insert(data.len() / 3, b'!');
        let new = ids(&edited).difference(&ids(&data)).count();
        println!("  one byte inserted at 1/3: {new} chunk(s) differ, the rest deduplicate");
    }
    // Seal every chunk as it would leave the endpoint, check framing as the server would, open.
    let sealer = Sealer::new(&root, ArchiveId::from_bytes([1; 16]), SealConfig::default());
    let start = std::time::Instant::now();
    let mut sealed_bytes = 0usize;
    let mut sealed = Vec::with_capacity(chunks.len());
    for c in &chunks {
        let block = sealer.seal(BlockKind::DATA, &data[c.offset..c.offset + c.len])?;
        SealedHeader::parse(block.as_bytes())?;
        sealed_bytes += block.as_bytes().len();
        sealed.push(block);
    }
    let seal_took = start.elapsed();
    let mut restored = Vec::with_capacity(data.len());
    for block in &sealed {
        restored.extend_from_slice(&sealer.open(BlockKind::DATA, &block.id(), block.as_bytes())?);
    }
    if restored != data {
        return Err("restored bytes differ from the original".into());
    }
    println!(
        "  sealed {} blocks ({} bytes stored, AES-256-GCM, Padmé-padded) in {:.0} ms; all opened and verified",
        sealed.len(),
        sealed_bytes,
        seal_took.as_secs_f64() * 1e3
    );
    let other = Chunker::new(
        &ArchiveKey::generate()?.chunker_key(),
        ChunkerConfig::DEFAULT,
    );
    let theirs: Vec<usize> = other.chunks(&data).map(|c| c.len).collect();
    let ours: Vec<usize> = chunks.iter().map(|c| c.len).collect();
    println!(
        "  another archive's key cuts the same bytes {}",
        if theirs == ours {
            "identically (tiny input)"
        } else {
            "differently"
        }
    );
    println!("ok");
    Ok(())
}
