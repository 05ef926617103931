//! F-9: arbitrary bytes as escrow envelopes into the parser and every identity's unwrap path.
//! Never panics; never runs Argon2 with costs above the ceiling (the fuzzer's malloc limit would
//! catch a 1 GiB allocation); never unwraps anything but the envelopes it was seeded with.
#![no_main]

use std::sync::LazyLock;

use cairn_escrow::*;
use libfuzzer_sys::fuzz_target;

struct Setup {
    escrow: EscrowIdentity,
    password_escrow: PasswordEscrowIdentity,
    kek: Kek,
}

static SETUP: LazyLock<Setup> = LazyLock::new(|| {
    let file: serde_json::Value = serde_json::from_str(include_str!(
        "../../crates/escrow/tests/vectors/escrow-v1.json"
    ))
    .expect("vector file");
    let ikm = hex_decode(file["escrow_ikm"].as_str().expect("ikm"));
    let authority = EscrowSecretKey::derive(&ikm).expect("authority");
    let kms_key: [u8; 32] = hex_decode(file["kms_key"].as_str().expect("kms key"))
        .try_into()
        .expect("32 bytes");
    Setup {
        escrow: EscrowIdentity(authority.clone()),
        // A wrong password: Argon2 runs (at the floor costs of the seeds) but nothing opens.
        password_escrow: PasswordEscrowIdentity {
            escrow: authority,
            password: Password::new("not the password"),
        },
        kek: Kek::new(file["kms_id"].as_str().expect("kms id"), kms_key).expect("kek"),
    }
});

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect()
}

fn frozen_key() -> [u8; 32] {
    [0x5a; 32]
}

fuzz_target!(|data: &[u8]| {
    let setup = &*SETUP;
    let Ok(envelope) = Envelope::parse(data) else {
        return;
    };
    // Whatever parses re-encodes to the same bytes.
    assert_eq!(envelope.to_bytes(), data);
    for identity in [
        &setup.escrow as &dyn Identity,
        &setup.kek,
        &setup.password_escrow,
    ] {
        if let Ok(key) = envelope.unwrap(&[identity]) {
            // Only the frozen vectors' key can come out: the identities hold nothing else.
            assert_eq!(*key.expose_secret(), frozen_key());
        }
    }
});
