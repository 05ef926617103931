//! The storage API bodies (`cairn-wire`, `docs/format/wire.md`): arbitrary bytes into the id-list,
//! block-batch, reference-list and snapshot-upload decoders (errors only, never a panic, no
//! allocation beyond the input), and whatever decodes re-encodes to the same bytes; a decoded
//! reference list applied to a base never panics, and a delta rebuilt from its result is
//! equivalent.
#![no_main]

use cairn_wire::refs::RefList;
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
    if let Ok(list) = RefList::decode(data) {
        assert_eq!(list.encode(), data);
        // Applied to a base made of its own removed ids (the base it must have had, minus
        // what it adds), it applies; the delta back from the result is the list.
        let base = list.removed.clone();
        let applied = list.apply(list.base.map(|_| base.as_slice()));
        if let (Some(b), Ok(full)) = (list.base, &applied) {
            assert_eq!(RefList::delta(b, &base, full), list);
        }
        // Applied to an arbitrary base (its added ids), it is an error or a sorted list.
        if let Ok(full) = list.apply(list.base.map(|_| list.added.as_slice())) {
            assert!(full.windows(2).all(|w| w[0] < w[1]));
        }
    }
    if let Ok((id, sealed, list)) = cairn_wire::decode_snapshot(data) {
        assert_eq!(
            cairn_seal::SealedHeader::parse(sealed).map(|h| h.id),
            Ok(id)
        );
        assert_eq!(cairn_wire::encode_snapshot(sealed, &list), data);
    }
});
