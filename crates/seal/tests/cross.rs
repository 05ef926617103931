//! AES-256-GCM on AWS-LC (what `cairn_seal::hazmat::aead` uses) against RustCrypto's `aes-gcm` (what it
//! used before `docs/design/0007-aes-gcm-on-aws-lc.md`): the same ciphertext and tag for every
//! key, nonce, AAD and message, each opens what the other sealed, and a changed byte is refused.
//! Blocks sealed by either implementation stay readable by the other.

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use cairn_seal::hazmat::aead::{self, AeadError, TAG_LEN};
use proptest::prelude::*;

fn rustcrypto_seal(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], msg: &[u8]) -> Vec<u8> {
    Aes256Gcm::new(&(*key).into())
        .encrypt(&(*nonce).into(), Payload { msg, aad })
        .unwrap()
}

fn rustcrypto_open(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], ct: &[u8]) -> Option<Vec<u8>> {
    Aes256Gcm::new(&(*key).into())
        .decrypt(&(*nonce).into(), Payload { msg: ct, aad })
        .ok()
}

/// Message lengths around AES-GCM's 16-byte blocks and AWS-LC's wider code paths (its AVX-512
/// and AVX2 loops take several blocks at a time).
fn lengths() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..=300, 300usize..=5000, 65_500usize..=66_000]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn aws_lc_and_rustcrypto_agree(
        key in any::<[u8; 32]>(),
        nonce in any::<[u8; 12]>(),
        aad in proptest::collection::vec(any::<u8>(), 0..300),
        len in lengths(),
        seed in any::<u8>(),
        flip in any::<prop::sample::Index>(),
    ) {
        let msg: Vec<u8> = (0..len).map(|i| (i % 251).to_le_bytes()[0].wrapping_mul(31) ^ seed).collect();
        let ours = aead::aes256gcm_seal(&key, &nonce, &aad, &msg);
        let theirs = rustcrypto_seal(&key, &nonce, &aad, &msg);
        prop_assert_eq!(&ours, &theirs);
        prop_assert_eq!(ours.len(), len + TAG_LEN);

        prop_assert_eq!(aead::aes256gcm_open(&key, &nonce, &aad, &theirs).unwrap(), msg.clone());
        prop_assert_eq!(rustcrypto_open(&key, &nonce, &aad, &ours), Some(msg.clone()));
        // Within a buffer: ciphertext after a prefix, plaintext moved to the front.
        let mut within = vec![0xAA; usize::from(seed % 80)];
        let start = within.len();
        within.extend_from_slice(&theirs);
        aead::aes256gcm_open_within(&key, &nonce, &aad, &mut within, start).unwrap();
        prop_assert_eq!(&within, &msg);

        // One changed bit anywhere (ciphertext or tag) is refused by both, and the in-place
        // open hands back nothing.
        let mut bad = ours.clone();
        let at = flip.index(bad.len());
        bad[at] ^= 1 << (at % 8);
        prop_assert_eq!(aead::aes256gcm_open(&key, &nonce, &aad, &bad), Err(AeadError));
        prop_assert_eq!(rustcrypto_open(&key, &nonce, &aad, &bad), None);
        let mut in_place = bad.clone();
        prop_assert_eq!(aead::aes256gcm_open_in_place(&key, &nonce, &aad, &mut in_place), Err(AeadError));
        prop_assert!(in_place.is_empty());

        // So is other AAD.
        let mut other_aad = aad.clone();
        other_aad.push(0);
        prop_assert_eq!(aead::aes256gcm_open(&key, &nonce, &other_aad, &ours), Err(AeadError));
    }
}

/// The in-place APIs: seal appends the tag, open truncates it away, and both algorithms empty the
/// buffer of anything that did not authenticate.
#[test]
fn in_place_open_truncates_or_empties() {
    let key = [5u8; 32];
    let msg = b"sixteen byte msg and some more".to_vec();

    let mut buf = msg.clone();
    aead::aes256gcm_seal_in_place(&key, &[1; 12], b"aad", &mut buf);
    assert_eq!(buf.len(), msg.len() + TAG_LEN);
    aead::aes256gcm_open_in_place(&key, &[1; 12], b"aad", &mut buf).unwrap();
    assert_eq!(buf, msg);

    let mut buf = msg.clone();
    aead::xchacha_seal_in_place(&key, &[1; 24], b"aad", &mut buf);
    aead::xchacha_open_in_place(&key, &[1; 24], b"aad", &mut buf).unwrap();
    assert_eq!(buf, msg);

    let mut past_end = vec![7u8; 40];
    assert_eq!(
        aead::aes256gcm_open_within(&key, &[1; 12], b"", &mut past_end, 41),
        Err(AeadError)
    );
    assert!(past_end.is_empty());
    for len in 0..TAG_LEN {
        let mut short = vec![7u8; len];
        assert_eq!(
            aead::aes256gcm_open_in_place(&key, &[1; 12], b"", &mut short),
            Err(AeadError)
        );
        assert!(short.is_empty());
        let mut short = vec![7u8; len];
        assert_eq!(
            aead::xchacha_open_in_place(&key, &[1; 24], b"", &mut short),
            Err(AeadError)
        );
        assert!(short.is_empty());
    }
    let mut wrong_key = aead::xchacha_seal(&key, &[1; 24], b"aad", &msg);
    assert_eq!(
        aead::xchacha_open_in_place(&[6; 32], &[1; 24], b"aad", &mut wrong_key),
        Err(AeadError)
    );
    assert!(wrong_key.is_empty());
}
