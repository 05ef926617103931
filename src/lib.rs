//! Cairn: end-to-end encrypted endpoint backup and file-activity monitoring.
//!
//! This crate is a thin facade: it re-exports each of Cairn's libraries as a module, and owns the
//! example binaries (`examples/`) and the benchmarks (`benches/`). Each library is usable on its
//! own; depend on it directly if you need only one.
//!
//! | module | crate | what it does |
//! | --- | --- | --- |
//! | [`agent`] | `cairn-agent` | the endpoint: enrollment, backup and restore over pinned TLS, check, status, deauthorization |
//! | [`archive`] | `cairn-archive` | the append-only archive log: CRC32C-framed records in segments, hash-chained commits, recovery, verify |
//! | [`backup`] | `cairn-backup` | the backup engine: snapshots over a block store, incremental backup, restore, check |
//! | [`chunk`] | `cairn-chunk` | keyed content-defined chunking (AES-PRF cut decisions), streaming and slice APIs |
//! | [`escrow`] | `cairn-escrow` | archive-key escrow envelopes: HPKE to the escrow authority, Argon2id passwords, AES-KWP; one-way modes |
//! | [`events`] | `cairn-events` | the protobuf file-event schema, batch validation, OCSF File System Activity export |
//! | [`keys`] | `cairn-keys` | the archive key hierarchy: random root key, frozen BLAKE3 subkey derivations |
//! | [`seal`] | `cairn-seal` | one block: keyed id, zstd, Padmé padding, AES-256-GCM or XChaCha20-Poly1305 |
//! | [`server`] | `cairn-server` | the multi-tenant HTTPS service: TLS policy, limits, PKI, tokens, per-user archives, events, escrow, devices |
//! | [`token`] | `cairn-token` | tenant-bound PASETO v4.public tokens: issue, verify, rotate, revoke, authorize |
//! | [`wire`] | `cairn-wire` | the storage API bodies: block-id lists and sealed-block batches |
//!
//! # Example
//!
//! ```
//! # fn main() -> Result<(), cairn::keys::KeyError> {
//! let root = cairn::keys::ArchiveKey::generate()?;
//! println!("archive key {}", root.fingerprint());
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use cairn_agent as agent;
pub use cairn_archive as archive;
pub use cairn_backup as backup;
pub use cairn_chunk as chunk;
pub use cairn_escrow as escrow;
pub use cairn_events as events;
pub use cairn_keys as keys;
pub use cairn_seal as seal;
pub use cairn_server as server;
pub use cairn_token as token;
pub use cairn_wire as wire;
