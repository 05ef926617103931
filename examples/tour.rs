//! A tour of the Cairn libraries that exist so far, run end to end on real data.
//!
//! `cargo run --locked --release --example tour [PATH]`
//!
//! Today it creates an archive root key and derives its subkeys. Each library adds its step as it
//! lands; the agent/server quickstart replaces this tour as the README's main command.

#![allow(clippy::print_stdout)] // a binary: printing is its job

use cairn::keys::ArchiveKey;

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
    println!("ok");
    Ok(())
}
