//! Round trips, tampering, AAD binding, slot swaps and size bounds of sealed blocks.

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cast_possible_truncation)]

use cairn_keys::ArchiveKey;
use cairn_seal::{
    Algorithm, ArchiveId, BlockKind, HEADER_LEN, MAX_PLAINTEXT_LEN, SealConfig, SealError,
    SealedHeader, Sealer,
};
use proptest::prelude::*;

fn sealer(root: u8, archive: u8, algorithm: Algorithm) -> Sealer {
    Sealer::new(
        &ArchiveKey::from_bytes([root; 32]),
        ArchiveId::from_bytes([archive; 16]),
        SealConfig::new(algorithm, 3).unwrap(),
    )
}

fn algorithms() -> impl Strategy<Value = Algorithm> {
    prop_oneof![
        Just(Algorithm::Aes256Gcm),
        Just(Algorithm::XChaCha20Poly1305)
    ]
}

fn random(seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(seed)
        .finalize_xof()
        .fill(&mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn round_trip(
        alg in algorithms(),
        kind in any::<u8>(),
        data in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..5000),
            prop::collection::vec(0u8..4, 0..100_000),
        ],
    ) {
        let s = sealer(1, 2, alg);
        let sealed = s.seal(BlockKind(kind), &data).unwrap();
        let header = SealedHeader::parse(sealed.as_bytes()).unwrap();
        prop_assert_eq!(header.id, sealed.id());
        prop_assert_eq!(header.algorithm, alg);
        prop_assert_eq!(header.id, s.block_id(BlockKind(kind), &data));
        prop_assert_eq!(s.open(BlockKind(kind), &sealed.id(), sealed.as_bytes()).unwrap(), data.clone());
        // Opening the bytes handed over (decrypted where they lie) gives the same plaintext.
        prop_assert_eq!(s.open_owned(BlockKind(kind), &sealed.id(), sealed.into_bytes()).unwrap(), data);
    }

    /// Any single-byte change anywhere in a sealed block makes it fail to open.
    #[test]
    fn any_byte_change_fails(
        alg in algorithms(),
        data in prop::collection::vec(any::<u8>(), 0..300),
        pos in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let s = sealer(3, 4, alg);
        let sealed = s.seal(BlockKind::DATA, &data).unwrap();
        let mut bad = sealed.as_bytes().to_vec();
        let i = pos.index(bad.len());
        bad[i] ^= flip;
        prop_assert!(s.open(BlockKind::DATA, &sealed.id(), &bad).is_err());
        prop_assert!(s.open_owned(BlockKind::DATA, &sealed.id(), bad).is_err());
    }
}

/// Exhaustively: every byte of a small block, every single-bit flip.
#[test]
fn every_bit_flip_fails() {
    for alg in [Algorithm::Aes256Gcm, Algorithm::XChaCha20Poly1305] {
        let s = sealer(5, 6, alg);
        let data = b"a small block of file data".repeat(3);
        let sealed = s.seal(BlockKind::DATA, &data).unwrap();
        let bytes = sealed.as_bytes();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.to_vec();
                bad[i] ^= 1 << bit;
                assert!(
                    s.open(BlockKind::DATA, &sealed.id(), &bad).is_err(),
                    "byte {i} bit {bit}"
                );
                assert!(
                    s.open_owned(BlockKind::DATA, &sealed.id(), bad).is_err(),
                    "byte {i} bit {bit}, owned"
                );
            }
        }
        // Truncation and extension fail too.
        for cut in 1..40 {
            assert!(
                s.open(BlockKind::DATA, &sealed.id(), &bytes[..bytes.len() - cut])
                    .is_err()
            );
        }
        for cut in 1..40 {
            let short = bytes[..bytes.len() - cut].to_vec();
            assert!(s.open_owned(BlockKind::DATA, &sealed.id(), short).is_err());
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(s.open(BlockKind::DATA, &sealed.id(), &longer).is_err());
        assert!(s.open_owned(BlockKind::DATA, &sealed.id(), longer).is_err());
    }
}

/// A-5/B-7: each field bound by the AAD, changed on its own, stops the block from opening.
#[test]
fn each_aad_field_is_bound() {
    let s = sealer(7, 8, Algorithm::Aes256Gcm);
    let data = random(b"aad", 10_000);
    let sealed = s.seal(BlockKind::TREE, &data).unwrap();
    let id = sealed.id();
    let good = sealed.as_bytes();
    assert!(s.open(BlockKind::TREE, &id, good).is_ok());

    let with = |i: usize, v: u8| {
        let mut b = good.to_vec();
        b[i] = v;
        b
    };
    // version
    assert_eq!(
        s.open(BlockKind::TREE, &id, &with(4, 2)),
        Err(SealError::UnsupportedVersion(2))
    );
    // algorithm: to the other known one (fails authentication) and to an unknown one
    assert_eq!(
        s.open(BlockKind::TREE, &id, &with(5, 2)),
        Err(SealError::Open)
    );
    assert_eq!(
        s.open(BlockKind::TREE, &id, &with(5, 9)),
        Err(SealError::UnknownAlgorithm(9))
    );
    // kind in the header, and the kind the caller expects
    assert_eq!(
        s.open(BlockKind::TREE, &id, &with(6, 0)),
        Err(SealError::Open)
    );
    assert_eq!(s.open(BlockKind::DATA, &id, good), Err(SealError::Open));
    assert_eq!(s.open(BlockKind::SNAPSHOT, &id, good), Err(SealError::Open));
    // flags: claim compression, and set a reserved bit
    let flag = good[7];
    assert_eq!(
        s.open(BlockKind::TREE, &id, &with(7, flag ^ 1)),
        Err(SealError::Open)
    );
    assert!(matches!(
        s.open(BlockKind::TREE, &id, &with(7, flag | 0x80)),
        Err(SealError::Malformed(_))
    ));
    // salt
    assert_eq!(
        s.open(BlockKind::TREE, &id, &with(8, good[8] ^ 1)),
        Err(SealError::Open)
    );
    // id in the header (and asking for that id)
    let bad = with(40, good[40] ^ 1);
    let claimed = SealedHeader::parse(&bad).unwrap().id;
    assert_eq!(
        s.open(BlockKind::TREE, &claimed, &bad),
        Err(SealError::Open)
    );
    // archive id
    let other_archive = sealer(7, 9, Algorithm::Aes256Gcm);
    assert_eq!(
        other_archive.open(BlockKind::TREE, &id, good),
        Err(SealError::Open)
    );
    // another key
    let other_key = sealer(70, 8, Algorithm::Aes256Gcm);
    assert_eq!(
        other_key.open(BlockKind::TREE, &id, good),
        Err(SealError::Open)
    );
}

/// Blocks swapped between slots: a valid block of the archive served for another id is refused.
#[test]
fn swapped_blocks_fail() {
    let s = sealer(11, 12, Algorithm::XChaCha20Poly1305);
    let a = s.seal(BlockKind::DATA, b"block a").unwrap();
    let b = s.seal(BlockKind::DATA, b"block b").unwrap();
    assert_eq!(
        s.open(BlockKind::DATA, &a.id(), b.as_bytes()),
        Err(SealError::Open)
    );
    assert_eq!(
        s.open(BlockKind::DATA, &b.id(), a.as_bytes()),
        Err(SealError::Open)
    );
    assert_eq!(
        s.open(BlockKind::DATA, &a.id(), a.as_bytes()).unwrap(),
        b"block a"
    );
}

/// the same plaintext gets unrelated ids in two archives; kinds are separated too.
#[test]
fn ids_are_keyed() {
    let a = sealer(1, 1, Algorithm::Aes256Gcm);
    let b = sealer(2, 1, Algorithm::Aes256Gcm);
    let data = b"a well-known file";
    assert_ne!(
        a.block_id(BlockKind::DATA, data),
        b.block_id(BlockKind::DATA, data)
    );
    assert_ne!(
        a.block_id(BlockKind::DATA, data),
        a.block_id(BlockKind::TREE, data)
    );
    assert_ne!(
        a.block_id(BlockKind::DATA, data).as_bytes(),
        blake3::hash(data).as_bytes()
    );
}

/// Sealing is randomized: two seals of one plaintext differ but share the id.
#[test]
fn fresh_salt_per_seal() {
    let s = sealer(1, 1, Algorithm::Aes256Gcm);
    let x = s.seal(BlockKind::DATA, b"same").unwrap();
    let y = s.seal(BlockKind::DATA, b"same").unwrap();
    assert_eq!(x.id(), y.id());
    assert_ne!(x.as_bytes(), y.as_bytes());
}

/// B-19: sealed sizes are Padmé sizes; many plaintext lengths share one sealed size.
#[test]
fn sizes_are_padded() {
    let s = sealer(1, 1, Algorithm::Aes256Gcm);
    let mut sizes = std::collections::BTreeSet::new();
    for len in (1_000_000..1_040_000).step_by(997) {
        let data = random(&(len as u64).to_le_bytes(), len);
        let sealed = s.seal(BlockKind::DATA, &data).unwrap();
        let body = sealed.as_bytes().len() - HEADER_LEN - 16;
        assert!(cairn_seal::padding::is_padme(body as u64));
        sizes.insert(sealed.as_bytes().len());
    }
    // 41 distinct lengths over 40 KB collapse into at most 3 sealed sizes (Padmé step: 32 KiB).
    assert!(sizes.len() <= 3, "{sizes:?}");
}

/// Compression pays on text and is skipped on random data (random data is stored as-is plus
/// framing and padding only).
#[test]
fn compression_choice() {
    let s = sealer(1, 1, Algorithm::Aes256Gcm);
    let text = b"lorem ipsum dolor sit amet, consectetur adipiscing elit ".repeat(20_000);
    let sealed = s.seal(BlockKind::DATA, &text).unwrap();
    assert!(SealedHeader::parse(sealed.as_bytes()).unwrap().compressed);
    assert!(sealed.as_bytes().len() < text.len() / 10);
    let noise = random(b"noise", 1 << 20);
    let sealed = s.seal(BlockKind::DATA, &noise).unwrap();
    assert!(!SealedHeader::parse(sealed.as_bytes()).unwrap().compressed);
    assert!(sealed.as_bytes().len() <= noise.len() + (noise.len() / 8) + 100);
}

#[test]
fn bounds_are_typed_errors() {
    let s = sealer(1, 1, Algorithm::Aes256Gcm);
    let too_big = vec![0u8; MAX_PLAINTEXT_LEN + 1];
    assert!(matches!(
        s.seal(BlockKind::DATA, &too_big),
        Err(SealError::TooLarge { .. })
    ));
    assert!(matches!(
        SealConfig::new(Algorithm::Aes256Gcm, 23),
        Err(SealError::InvalidLevel(23))
    ));
    assert!(matches!(
        SealedHeader::parse(b"short"),
        Err(SealError::Malformed(_))
    ));
    let mut junk = vec![0u8; 200];
    junk[..4].copy_from_slice(b"CRNB");
    assert!(SealedHeader::parse(&junk).is_err());
}

#[test]
fn debug_hides_keys() {
    let s = sealer(0x42, 1, Algorithm::Aes256Gcm);
    let text = format!("{s:?}");
    assert!(text.contains("[REDACTED]"));
    assert!(!text.contains("4242"), "{text}");
}
