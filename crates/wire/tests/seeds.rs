//! The committed fuzz seeds of `server_wire` decode as what their names say, so that the fuzzer
//! starts from valid inputs. `cargo test -p cairn-wire -- --ignored write_upload_seed` rewrites
//! the upload seed (a batch of two real sealed blocks).

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

fn seeds() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/server_wire")
}

#[test]
fn fuzz_seeds_decode() {
    let read = |name: &str| std::fs::read(seeds().join(name)).unwrap();
    assert_eq!(cairn_wire::decode_ids(&read("ids-2")).unwrap().len(), 2);
    assert!(
        cairn_wire::split_batch(&read("empty-batch"))
            .unwrap()
            .is_empty()
    );
    assert_eq!(cairn_wire::split_batch(&read("batch-2")).unwrap().len(), 2);
    let upload = read("upload-2");
    let blocks = cairn_wire::decode_upload(&upload).unwrap();
    assert_eq!(blocks.len(), 2);
    assert_eq!(
        cairn_wire::encode_batch(&cairn_wire::split_batch(&upload).unwrap()),
        upload
    );
}

#[test]
#[ignore = "rewrites a committed seed"]
fn write_upload_seed() {
    let sealer = cairn_seal::Sealer::new(
        &cairn_keys::ArchiveKey::from_bytes([5; 32]),
        cairn_seal::ArchiveId::from_bytes([6; 16]),
        cairn_seal::SealConfig::default(),
    );
    let blocks: Vec<Vec<u8>> = [&b"first block"[..], &[7u8; 3000][..]]
        .iter()
        .map(|p| {
            sealer
                .seal(cairn_seal::BlockKind::DATA, p)
                .unwrap()
                .into_bytes()
        })
        .collect();
    std::fs::write(seeds().join("upload-2"), cairn_wire::encode_batch(&blocks)).unwrap();
}
