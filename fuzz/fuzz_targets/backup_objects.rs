//! F-3 class for `cairn-backup`'s objects: arbitrary bytes into the tree and snapshot decoders.
//! Neither may panic; whatever decodes re-encodes to exactly the same bytes (one encoding per
//! value; a tree of an older version re-encodes with the current version byte, a snapshot of an
//! older version re-encodes as the current one and decodes to the same value), and a tree
//! that decodes has only names restore can create safely.
//!
//! Input: one mode byte, then the object. Mode bit 0: a snapshot (else a tree); bit 1: append a
//! valid tag to the snapshot bytes first, so the decoder behind the tag check is reached.
#![no_main]

use cairn_backup::{SNAPSHOT_VERSION, Snapshot, TREE_VERSION, Tree, is_safe_name};
use cairn_keys::ArchiveKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, object)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if let Ok(tree) = Tree::decode(object) {
            assert!(tree.entries.iter().all(|e| is_safe_name(&e.name)));
            let again = tree.encode().expect("a decoded tree encodes");
            // An older version that decodes re-encodes as the current one, otherwise the same.
            let mut expected = object.to_vec();
            expected[4] = TREE_VERSION;
            assert_eq!(again, expected, "tree encoding is not canonical");
        }
        return;
    }
    let key = ArchiveKey::from_bytes([7; 32]).snapshot_key();
    let mut bytes = object.to_vec();
    if mode & 2 != 0 {
        let tag = blake3::keyed_hash(key.expose_secret(), &bytes);
        bytes.extend_from_slice(tag.as_bytes());
    }
    if let Ok(snapshot) = Snapshot::decode(&bytes, &key) {
        let again = snapshot.encode(&key).expect("a decoded snapshot encodes");
        if bytes[4] == SNAPSHOT_VERSION {
            assert_eq!(again, bytes, "snapshot encoding is not canonical");
        } else {
            // An older record re-encodes as the current version (new fields empty); what it
            // says must survive that unchanged.
            let back = Snapshot::decode(&again, &key).expect("a re-encoded snapshot decodes");
            assert_eq!(back, snapshot, "an older snapshot changes when re-encoded");
        }
    }
});
