//! A tour of the Cairn libraries that exist so far, run end to end on real data.
//!
//! `cargo run --locked --release --example tour [PATH]`
//!
//! It creates an archive root key, derives its subkeys, chunks a file (PATH, or 48 MiB of
//! generated data) with the keyed chunker and shows that a one-byte edit changes one chunk, seals
//! the chunks, then backs up a generated folder into a local archive, changes one file, backs up
//! again (only the change is read and sent), restores into a fresh folder, verifies every byte
//! and checks every block. Each library adds its step as it lands; the agent/server quickstart
//! replaces this tour as the README's main command.

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
        "  chunked {} bytes into {} chunks (keyed v2, 512 KiB/1 MiB/8 MiB) in {:.0} ms",
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
    backup_tour(&root)?;
    println!("ok");
    Ok(())
}

/// Back up a generated folder, change a file, back up again, restore and verify.
fn backup_tour(root: &ArchiveKey) -> Result<(), Box<dyn std::error::Error>> {
    use cairn::archive::{Config, DirStorage};
    use cairn::backup::{ArchiveStore, BackupOptions, FileCache, Repository};

    let work = tempfile::tempdir()?;
    let src = work.path().join("documents");
    for (i, dir) in ["reports", "reports/2026", "photos", "code/src"]
        .iter()
        .enumerate()
    {
        std::fs::create_dir_all(src.join(dir))?;
        for j in 0..25u32 {
            let mut text = Vec::new();
            for line in 0..(40 + 7 * j) {
                text.extend_from_slice(
                    format!("{dir} file {j} line {line}: the quick brown fox\n").as_bytes(),
                );
            }
            std::fs::write(src.join(dir).join(format!("note-{j}.txt")), &text)?;
        }
        let mut blob = vec![0u8; (1 + i) << 20];
        blake3::Hasher::new()
            .update(dir.as_bytes())
            .finalize_xof()
            .fill(&mut blob);
        std::fs::write(src.join(dir).join("blob.bin"), &blob)?;
    }
    let id: [u8; 16] = root.fingerprint().as_bytes()[..16].try_into()?;
    let store = ArchiveStore::open(
        DirStorage::open(work.path().join("repo"))?,
        Config::new(id).with_index_cache(true),
    )?;
    let repo = Repository::new(store, root, ArchiveId::from_bytes(id));
    let cache = FileCache::open(&work.path().join("cache.redb"))?;
    let first = repo.backup(&BackupOptions::new("tour", [&src]).cache(&cache))?;
    println!(
        "  backed up {} entries ({:.1} MiB read) as {} sealed blocks ({:.1} MiB) into a local archive",
        first.entries,
        first.bytes_read as f64 / 1048576.0,
        first.blocks_sent,
        first.bytes_sent as f64 / 1048576.0
    );
    std::fs::write(src.join("reports/note-3.txt"), b"rewritten\n")?;
    let snapshots = repo.snapshots()?;
    let (parent_id, parent) = snapshots.last().ok_or("no snapshot")?;
    let second = repo.backup(
        &BackupOptions::new("tour", [&src])
            .parent(Some((parent_id, parent)))
            .cache(&cache),
    )?;
    println!(
        "  changed one file: the next backup read {} bytes, left {} files unread, sent {} blocks",
        second.bytes_read, second.files_unchanged, second.blocks_sent
    );
    let (_, latest) = repo.snapshots()?.pop().ok_or("no snapshot")?;
    let target = work.path().join("restored");
    let restored = repo.restore(&latest, &target)?;
    same_tree(&src, &target)?;
    let report = repo.check(true)?;
    if !report.errors.is_empty() {
        return Err(format!("check found {} errors", report.errors.len()).into());
    }
    println!(
        "  restored {} entries into a fresh folder: every byte matches; check --read-data: {} blocks, 0 errors",
        restored.entries, report.blocks
    );
    Ok(())
}

/// Every file under `a` is under `b` with the same bytes, and nothing else is.
fn same_tree(a: &std::path::Path, b: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let names = |dir: &std::path::Path| -> std::io::Result<Vec<std::ffi::OsString>> {
        let mut v: Vec<_> = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        v.sort();
        Ok(v)
    };
    let (na, nb) = (names(a)?, names(b)?);
    if na != nb {
        return Err(format!("{} and {} list different names", a.display(), b.display()).into());
    }
    for name in na {
        let (pa, pb) = (a.join(&name), b.join(&name));
        if pa.is_dir() {
            same_tree(&pa, &pb)?;
        } else if std::fs::read(&pa)? != std::fs::read(&pb)? {
            return Err(format!("{} differs", pb.display()).into());
        }
    }
    Ok(())
}
