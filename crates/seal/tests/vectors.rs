//! Known-answer vectors for sealed blocks, format v1 (`tests/vectors/v1.json`).
//!
//! Every committed block MUST open to its plaintext forever (backward compatibility). Blocks
//! stored uncompressed must also be reproduced byte for byte by `hazmat::seal_with_salt`; compressed ones
//! are not compared on the seal side, because zstd does not promise identical output across
//! versions (only that old frames decode). Regenerate after adding cases with
//! `CAIRN_REGENERATE_VECTORS=1 cargo test -p cairn-seal --test vectors`.

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cairn_keys::ArchiveKey;
use cairn_seal::{Algorithm, ArchiveId, BlockId, BlockKind, SealConfig, SealedHeader, Sealer};
use serde::{Deserialize, Serialize};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/v1.json");

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Case {
    name: String,
    root_key: String,
    archive_id: String,
    algorithm: String,
    kind: u8,
    salt: String,
    /// `random:<seed>:<len>`, `text:<len>` or `hex:<bytes>`.
    plaintext: String,
    id: String,
    sealed: String,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct File {
    description: String,
    cases: Vec<Case>,
}

fn plaintext(desc: &str) -> Vec<u8> {
    let parts: Vec<&str> = desc.split(':').collect();
    match parts[..] {
        ["random", seed, len] => {
            let mut out = vec![0u8; len.parse().unwrap()];
            blake3::Hasher::new()
                .update(seed.as_bytes())
                .finalize_xof()
                .fill(&mut out);
            out
        }
        ["text", len] => b"cairn keeps every version of every file. "
            .iter()
            .copied()
            .cycle()
            .take(len.parse().unwrap())
            .collect(),
        ["hex", bytes] => hex::decode(bytes).unwrap(),
        _ => panic!("bad plaintext description {desc}"),
    }
}

fn algorithm(name: &str) -> Algorithm {
    match name {
        "AES-256-GCM" => Algorithm::Aes256Gcm,
        "XChaCha20-Poly1305" => Algorithm::XChaCha20Poly1305,
        other => panic!("unknown algorithm {other}"),
    }
}

fn sealer(case: &Case) -> Sealer {
    let root: [u8; 32] = hex::decode(&case.root_key).unwrap().try_into().unwrap();
    let archive: [u8; 16] = hex::decode(&case.archive_id).unwrap().try_into().unwrap();
    Sealer::new(
        &ArchiveKey::from_bytes(root),
        ArchiveId::from_bytes(archive),
        SealConfig::new(algorithm(&case.algorithm), 3).unwrap(),
    )
}

fn generate() -> File {
    let specs: [(&str, &str, u8, &str); 10] = [
        ("empty, AES-256-GCM", "AES-256-GCM", 0, "hex:"),
        ("empty, XChaCha20-Poly1305", "XChaCha20-Poly1305", 0, "hex:"),
        ("one byte", "AES-256-GCM", 0, "hex:00"),
        ("random 100 B", "AES-256-GCM", 0, "random:a:100"),
        (
            "random 100 B, XChaCha",
            "XChaCha20-Poly1305",
            0,
            "random:a:100",
        ),
        (
            "random 2000 B, tree kind",
            "AES-256-GCM",
            1,
            "random:b:2000",
        ),
        (
            "random 1500 B, snapshot kind",
            "XChaCha20-Poly1305",
            2,
            "random:c:1500",
        ),
        ("text 5000 B (compressed)", "AES-256-GCM", 0, "text:5000"),
        (
            "text 70000 B (compressed, probed)",
            "XChaCha20-Poly1305",
            0,
            "text:70000",
        ),
        ("reserved kind 200", "AES-256-GCM", 200, "random:d:64"),
    ];
    let cases = specs
        .iter()
        .enumerate()
        .map(|(i, (name, alg, kind, pt))| {
            let mut case = Case {
                name: (*name).into(),
                root_key: hex::encode(blake3::hash(b"cairn-seal vector root").as_bytes()),
                archive_id: hex::encode([0xA5u8; 16]),
                algorithm: (*alg).into(),
                kind: *kind,
                salt: hex::encode(
                    &blake3::hash(&u64::try_from(i).unwrap().to_le_bytes()).as_bytes()[..24],
                ),
                plaintext: (*pt).into(),
                id: String::new(),
                sealed: String::new(),
            };
            let salt: [u8; 24] = hex::decode(&case.salt).unwrap().try_into().unwrap();
            let sealed = cairn_seal::hazmat::seal_with_salt(
                &sealer(&case),
                BlockKind(*kind),
                &plaintext(pt),
                salt,
            )
            .unwrap();
            case.id = sealed.id().to_string();
            case.sealed = hex::encode(sealed.as_bytes());
            case
        })
        .collect();
    File {
        description: "cairn-seal sealed blocks, format v1 (docs/format/seal.md)".into(),
        cases,
    }
}

#[test]
fn committed_blocks_open() {
    let file: File = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    assert!(file.cases.len() >= 10);
    for case in &file.cases {
        let sealed = hex::decode(&case.sealed).unwrap();
        let id: [u8; 32] = hex::decode(&case.id).unwrap().try_into().unwrap();
        let opened = sealer(case).open(BlockKind(case.kind), &BlockId::from_bytes(id), &sealed);
        assert_eq!(opened.unwrap(), plaintext(&case.plaintext), "{}", case.name);
    }
}

#[test]
fn vectors_are_up_to_date() {
    let fresh = generate();
    if std::env::var_os("CAIRN_REGENERATE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&fresh).unwrap() + "\n";
        std::fs::write(PATH, text).unwrap();
    }
    let committed: File = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    assert_eq!(committed.cases.len(), fresh.cases.len());
    for (old, new) in committed.cases.iter().zip(&fresh.cases) {
        assert_eq!(old.id, new.id, "{}: block ids are frozen", old.name);
        let header = SealedHeader::parse(&hex::decode(&old.sealed).unwrap()).unwrap();
        if !header.compressed {
            assert_eq!(
                old.sealed, new.sealed,
                "{}: the v1 layout changed",
                old.name
            );
        }
    }
}
