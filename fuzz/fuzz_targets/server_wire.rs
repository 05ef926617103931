//! The storage API bodies (`cairn-wire`, `docs/format/wire.md`): arbitrary bytes into the id-list
//! and block-batch decoders (errors only, never a panic, no allocation beyond the input), and
//! whatever decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ids) = cairn_wire::decode_ids(data) {
        assert_eq!(cairn_wire::encode_ids(&ids), data);
    }
    if let Ok(blocks) = cairn_wire::split_batch(data) {
        assert_eq!(cairn_wire::encode_batch(&blocks), data);
    }
    if let Ok(upload) = cairn_wire::decode_upload(data) {
        for (id, block) in upload {
            let header = cairn_seal::SealedHeader::parse(block).expect("checked by decode_upload");
            assert_eq!(header.id, id);
        }
    }
});
