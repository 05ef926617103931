//! Known-answer vectors for the v1 derivations (`tests/vectors/derive.json`).
//!
//! The file is produced by `generate()` below. `vectors_are_up_to_date` fails if the committed
//! file differs from what the code derives today; to regenerate after an *intended* format change
//! (which must also bump the version), run
//! `CAIRN_REGENERATE_VECTORS=1 cargo test -p cairn-keys --test vectors`.

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cairn_keys::{ArchiveKey, KEY_LEN, context};
use serde::{Deserialize, Serialize};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/derive.json");

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Vector {
    comment: String,
    root: String,
    chunker_key: String,
    block_id_key: String,
    block_key: String,
    snapshot_key: String,
    fingerprint: String,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct File {
    description: String,
    contexts: Vec<(String, String)>,
    vectors: Vec<Vector>,
}

/// The roots the vectors cover: edge patterns and pseudo-random ones from a fixed seed.
fn roots() -> Vec<(String, [u8; KEY_LEN])> {
    let mut roots = vec![
        ("all zero".to_string(), [0u8; KEY_LEN]),
        ("all 0xff".to_string(), [0xffu8; KEY_LEN]),
        (
            "bytes 0..32".to_string(),
            core::array::from_fn(|i| u8::try_from(i).unwrap()),
        ),
    ];
    for n in 0..4 {
        let seed = format!("cairn-keys test root {n}");
        roots.push((
            format!("BLAKE3(\"{seed}\")"),
            *blake3::hash(seed.as_bytes()).as_bytes(),
        ));
    }
    roots
}

fn generate() -> File {
    let vectors = roots()
        .into_iter()
        .map(|(comment, bytes)| {
            let root = ArchiveKey::from_bytes(bytes);
            Vector {
                comment,
                root: hex::encode(bytes),
                chunker_key: hex::encode(root.chunker_key().expose_secret()),
                block_id_key: hex::encode(root.block_id_key().expose_secret()),
                block_key: hex::encode(root.block_key().expose_secret()),
                snapshot_key: hex::encode(root.snapshot_key().expose_secret()),
                fingerprint: root.fingerprint().to_string(),
            }
        })
        .collect();
    File {
        description: "cairn-keys v1 derivations: subkey = BLAKE3 derive_key(context, root); \
                      fingerprint = first 16 bytes of derive_key(fingerprint context, root)"
            .to_string(),
        contexts: context::ALL
            .iter()
            .map(|(name, ctx)| (name.to_string(), ctx.to_string()))
            .collect(),
        vectors,
    }
}

#[test]
fn vectors_are_up_to_date() {
    let fresh = serde_json::to_string_pretty(&generate()).unwrap() + "\n";
    if std::env::var_os("CAIRN_REGENERATE_VECTORS").is_some() {
        std::fs::write(PATH, &fresh).unwrap();
    }
    let committed = std::fs::read_to_string(PATH).expect("committed vector file");
    assert_eq!(
        committed, fresh,
        "derivations changed: this is a format change (new version + new vectors), not an edit"
    );
}

#[test]
fn committed_vectors_verify() {
    let file: File = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    assert!(file.vectors.len() >= 5);
    for v in &file.vectors {
        let root = ArchiveKey::try_from_slice(&hex::decode(&v.root).unwrap()).unwrap();
        assert_eq!(
            hex::encode(root.chunker_key().expose_secret()),
            v.chunker_key,
            "{}",
            v.comment
        );
        assert_eq!(
            hex::encode(root.block_id_key().expose_secret()),
            v.block_id_key,
            "{}",
            v.comment
        );
        assert_eq!(
            hex::encode(root.block_key().expose_secret()),
            v.block_key,
            "{}",
            v.comment
        );
        assert_eq!(
            hex::encode(root.snapshot_key().expose_secret()),
            v.snapshot_key,
            "{}",
            v.comment
        );
        assert_eq!(
            root.fingerprint().to_string(),
            v.fingerprint,
            "{}",
            v.comment
        );
    }
}

/// The context strings in the spec (`docs/format/keys.md`), copied here by hand, must be the
/// ones the code uses, and the derivation must be plain BLAKE3 `derive_key`.
#[test]
fn spec_table_matches_code() {
    let spec = [
        ("ChunkerKey", "cairn 2026-11-27 v1 chunker key"),
        ("BlockIdKey", "cairn 2026-11-27 v1 block-id key"),
        ("BlockKey", "cairn 2026-11-27 v1 block-encryption key"),
        (
            "SnapshotKey",
            "cairn 2026-11-27 v1 snapshot-authentication key",
        ),
        ("KeyFingerprint", "cairn 2026-11-27 v1 key fingerprint"),
    ];
    assert_eq!(context::ALL, spec);
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/format/keys.md"
    ))
    .unwrap();
    for (_, ctx) in spec {
        assert!(
            doc.contains(&format!("`{ctx}`")),
            "docs/format/keys.md lacks {ctx}"
        );
    }
    let root = [0x42u8; KEY_LEN];
    let key = ArchiveKey::from_bytes(root);
    assert_eq!(
        key.chunker_key().expose_secret(),
        &blake3::derive_key(spec[0].1, &root)
    );
    assert_eq!(
        key.fingerprint().as_bytes()[..],
        blake3::derive_key(spec[4].1, &root)[..16]
    );
}
