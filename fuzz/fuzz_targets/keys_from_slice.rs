//! Arbitrary bytes as key material: only exactly 32 bytes are accepted, and they derive the same
//! subkeys whichever key type they were read as. Never panics.
#![no_main]

use cairn_keys::{ArchiveKey, BlockKey, KEY_LEN, KeyError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ArchiveKey::try_from_slice(data) {
        Ok(root) => {
            assert_eq!(data.len(), KEY_LEN);
            assert_eq!(&root.expose_secret()[..], data);
            let again = ArchiveKey::from_bytes(*root.expose_secret());
            assert_eq!(root.block_key(), again.block_key());
            assert_eq!(root.fingerprint(), again.fingerprint());
            assert!(BlockKey::try_from_slice(data).is_ok());
        }
        Err(KeyError::InvalidLength { expected, actual }) => {
            assert_eq!((expected, actual), (KEY_LEN, data.len()));
            assert_ne!(data.len(), KEY_LEN);
        }
        Err(other) => panic!("unexpected error {other:?}"),
    }
});
