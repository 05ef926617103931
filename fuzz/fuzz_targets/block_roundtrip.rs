//! F-5: arbitrary plaintext and parameters through compress -> pad -> seal -> open -> decompress,
//! which must give the input back (the zstd `simple_round_trip` pattern).
#![no_main]

use arbitrary::Arbitrary;
use cairn_keys::ArchiveKey;
use cairn_seal::{Algorithm, ArchiveId, BlockKind, SealConfig, SealedHeader, Sealer};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    root: [u8; 32],
    archive: [u8; 16],
    xchacha: bool,
    level: i8,
    kind: u8,
    salt: [u8; 24],
    plaintext: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let alg = if input.xchacha {
        Algorithm::XChaCha20Poly1305
    } else {
        Algorithm::Aes256Gcm
    };
    let Ok(config) = SealConfig::new(alg, i32::from(input.level)) else {
        assert!(!cairn_seal::ZSTD_LEVELS.contains(&i32::from(input.level)));
        return;
    };
    let sealer = Sealer::new(
        &ArchiveKey::from_bytes(input.root),
        ArchiveId::from_bytes(input.archive),
        config,
    );
    let kind = BlockKind(input.kind);
    let sealed = cairn_seal::hazmat::seal_with_salt(&sealer, kind, &input.plaintext, input.salt)
        .expect("small block");
    let header = SealedHeader::parse(sealed.as_bytes()).expect("own blocks parse");
    assert_eq!(header.id, sealed.id());
    let opened = sealer
        .open(kind, &sealed.id(), sealed.as_bytes())
        .expect("own blocks open");
    assert_eq!(opened, input.plaintext);
});
