//! AES-GCM is not key-committing. This test builds a ciphertext that authenticates under two
//! different keys (the "invisible salamanders" construction: solve one GHASH block in GF(2^128)),
//! checks that the bare AEAD layer accepts it under both, and that `Sealer::open` rejects it under
//! both, because the block id (a keyed hash of the plaintext, also bound in the AAD) commits the
//! block to one plaintext under one key.

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// GCM's GF(2^128) is defined on big-endian bit strings; this test computes in it directly.
#![allow(clippy::big_endian_bytes)]

use aes::Aes256;
use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};
use cairn_keys::ArchiveKey;
use cairn_seal::hazmat::aead;
use cairn_seal::{
    ArchiveId, BLOCK_KEY_CONTEXT, BlockKind, HEADER_LEN, SealConfig, SealError, Sealer,
};

/// Multiplication in GCM's field (NIST SP 800-38D, Algorithm 1).
fn gf_mul(x: u128, y: u128) -> u128 {
    const R: u128 = 0xE1 << 120;
    let (mut z, mut v) = (0u128, y);
    for i in (0..128).rev() {
        if (x >> i) & 1 == 1 {
            z ^= v;
        }
        v = if v & 1 == 1 { (v >> 1) ^ R } else { v >> 1 };
    }
    z
}

fn gf_pow(mut x: u128, mut e: u128) -> u128 {
    let mut acc = 1u128 << 127; // the field's one
    while e > 0 {
        if e & 1 == 1 {
            acc = gf_mul(acc, x);
        }
        x = gf_mul(x, x);
        e >>= 1;
    }
    acc
}

fn gf_inv(x: u128) -> u128 {
    gf_pow(x, u128::MAX - 1) // x^(2^128 - 2)
}

fn aes_block(key: &[u8; 32], block: [u8; 16]) -> u128 {
    let mut b = Array::from(block);
    Aes256::new(&Array::from(*key)).encrypt_block(&mut b);
    u128::from_be_bytes(b.into())
}

/// GHASH of AAD and ciphertext (both zero-padded to blocks) and the length block.
fn ghash(h: u128, aad: &[u8], ct: &[u8]) -> u128 {
    let mut x = 0u128;
    for data in [aad, ct] {
        for chunk in data.chunks(16) {
            let mut b = [0u8; 16];
            b[..chunk.len()].copy_from_slice(chunk);
            x = gf_mul(x ^ u128::from_be_bytes(b), h);
        }
    }
    let lens = (u128::from(aad.len() as u64 * 8) << 64) | u128::from(ct.len() as u64 * 8);
    gf_mul(x ^ lens, h)
}

/// The per-block AEAD key, derived exactly as `docs/format/seal.md` specifies.
fn block_key(root: &ArchiveKey, salt: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(BLOCK_KEY_CONTEXT);
    h.update(root.block_key().expose_secret());
    h.update(salt);
    *h.finalize().as_bytes()
}

#[test]
fn a7_two_key_ciphertext_is_rejected() {
    let archive = ArchiveId::from_bytes([5; 16]);
    let (root_a, root_b) = (
        ArchiveKey::from_bytes([0xA; 32]),
        ArchiveKey::from_bytes([0xB; 32]),
    );
    let sealer_a = Sealer::new(&root_a, archive, SealConfig::default());
    let sealer_b = Sealer::new(&root_b, archive, SealConfig::default());

    // Start from a genuine block of A, and keep its header (so its framing and AAD are real).
    let mut data = vec![0u8; 4000];
    blake3::Hasher::new()
        .update(b"a7")
        .finalize_xof()
        .fill(&mut data);
    let genuine = sealer_a.seal(BlockKind::DATA, &data).unwrap();
    let header = genuine.as_bytes()[..HEADER_LEN].to_vec();
    let salt = &header[8..32];
    let (ka, kb) = (block_key(&root_a, salt), block_key(&root_b, salt));
    // AAD = header ‖ archive id ‖ zeros to 128 bytes (docs/format/seal.md).
    let mut aad = header.clone();
    aad.extend_from_slice(archive.as_bytes());
    aad.resize(128, 0);

    // The genuine body opens under A's derived key with the zero nonce: the spec is implemented.
    let body = &genuine.as_bytes()[HEADER_LEN..];
    assert!(aead::aes256gcm_open(&ka, &[0; 12], &aad, body).is_ok());

    // Craft a body of the same length whose one free block makes the tags agree under ka and kb.
    let mut ct = body[..body.len() - 16].to_vec();
    let j = 3; // the free ciphertext block
    ct[16 * j..16 * j + 16].fill(0);
    let (ha, hb) = (aes_block(&ka, [0; 16]), aes_block(&kb, [0; 16]));
    let mut j0 = [0u8; 16];
    j0[15] = 1; // 96-bit zero nonce ‖ counter 1
    let (ea, eb) = (aes_block(&ka, j0), aes_block(&kb, j0));
    let blocks = aad.len().div_ceil(16) + ct.len().div_ceil(16) + 1;
    let e = (blocks - (aad.len().div_ceil(16) + j)) as u128; // power of H multiplying block j
    let rhs = ea ^ ghash(ha, &aad, &ct) ^ eb ^ ghash(hb, &aad, &ct);
    let x = gf_mul(rhs, gf_inv(gf_pow(ha, e) ^ gf_pow(hb, e)));
    ct[16 * j..16 * j + 16].copy_from_slice(&x.to_be_bytes());
    let tag = ea ^ ghash(ha, &aad, &ct);
    assert_eq!(
        tag,
        eb ^ ghash(hb, &aad, &ct),
        "the tags must agree by construction"
    );
    let mut forged = ct.clone();
    forged.extend_from_slice(&tag.to_be_bytes());

    // The bare AEAD accepts the same bytes under both keys: GCM does not commit to a key.
    let pa = aead::aes256gcm_open(&ka, &[0; 12], &aad, &forged).unwrap();
    let pb = aead::aes256gcm_open(&kb, &[0; 12], &aad, &forged).unwrap();
    assert_ne!(pa, pb);

    // Sealed-block open refuses it under both archives' keys.
    let mut block = header.clone();
    block.extend_from_slice(&forged);
    assert_eq!(
        sealer_a.open(BlockKind::DATA, &genuine.id(), &block),
        Err(SealError::Open)
    );
    assert_eq!(
        sealer_b.open(BlockKind::DATA, &genuine.id(), &block),
        Err(SealError::Open)
    );
    assert!(
        sealer_a
            .open(BlockKind::DATA, &genuine.id(), genuine.as_bytes())
            .is_ok()
    );
}

/// `identify` + `seal_identified` give a block that opens like `seal`'s, and a sealer refuses
/// to seal what another sealer (another id key) identified.
#[test]
fn identified_blocks_seal_once_and_only_with_their_sealer() {
    let archive = ArchiveId::from_bytes([5; 16]);
    let a = Sealer::new(
        &ArchiveKey::from_bytes([0xA; 32]),
        archive,
        SealConfig::default(),
    );
    let b = Sealer::new(
        &ArchiveKey::from_bytes([0xB; 32]),
        archive,
        SealConfig::default(),
    );
    let data = b"identified once, sealed once".repeat(100);
    let identified = a.identify(BlockKind::DATA, data.clone());
    assert_eq!(identified.id(), a.block_id(BlockKind::DATA, &data));
    assert_eq!(identified.kind(), BlockKind::DATA);
    assert_eq!(identified.plaintext(), &data[..]);
    let sealed = a.seal_identified(&identified).unwrap();
    assert_eq!(sealed.id(), identified.id());
    assert_eq!(
        a.open(BlockKind::DATA, &sealed.id(), sealed.as_bytes())
            .unwrap(),
        data
    );
    // A fresh salt per seal: two seals of one identified block differ.
    assert_ne!(a.seal_identified(&identified).unwrap(), sealed);
    assert_eq!(b.seal_identified(&identified), Err(SealError::WrongSealer));
    assert!(!format!("{identified:?}").contains("identified once"));
}
