//! F-4: mutated valid sealed blocks into `open`: it must fail unless the bytes are unchanged.
//! Also: arbitrary bytes into the key-less framing check (`SealedHeader::parse`) and `open`.
#![no_main]

use arbitrary::Arbitrary;
use cairn_keys::ArchiveKey;
use cairn_seal::{Algorithm, ArchiveId, BlockKind, SealConfig, SealedHeader, Sealer};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    xchacha: bool,
    kind: u8,
    plaintext: Vec<u8>,
    mutations: Vec<(u16, u8)>,
    truncate: Option<u16>,
    raw: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let alg = if input.xchacha {
        Algorithm::XChaCha20Poly1305
    } else {
        Algorithm::Aes256Gcm
    };
    let sealer = Sealer::new(
        &ArchiveKey::from_bytes([3; 32]),
        ArchiveId::from_bytes([4; 16]),
        SealConfig::new(alg, 1).expect("valid level"),
    );
    let kind = BlockKind(input.kind);
    let sealed = cairn_seal::hazmat::seal_with_salt(&sealer, kind, &input.plaintext, [9; 24])
        .expect("small block");
    let mut bytes = sealed.as_bytes().to_vec();
    for (pos, xor) in &input.mutations {
        let i = usize::from(*pos) % bytes.len();
        bytes[i] ^= xor;
    }
    if let Some(t) = input.truncate {
        bytes.truncate(usize::from(t) % (bytes.len() + 1));
    }
    let result = sealer.open(kind, &sealed.id(), &bytes);
    if bytes == sealed.as_bytes() {
        assert_eq!(result.expect("unchanged block opens"), input.plaintext);
    } else {
        assert!(result.is_err(), "a modified block opened");
    }
    // Arbitrary bytes: framing check and open return errors, never panic.
    let _ = SealedHeader::parse(&input.raw);
    assert!(sealer.open(kind, &sealed.id(), &input.raw).is_err() || input.raw == sealed.as_bytes());
});
