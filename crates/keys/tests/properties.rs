//! Property tests of the hierarchy: independence of subkeys and redaction of secrets (K-1).

use cairn_keys::{ArchiveKey, BlockIdKey, BlockKey, ChunkerKey, KEY_LEN, SnapshotKey};
use proptest::prelude::*;

fn all_subkeys(root: &ArchiveKey) -> Vec<[u8; KEY_LEN]> {
    vec![
        *root.chunker_key().expose_secret(),
        *root.block_id_key().expose_secret(),
        *root.block_key().expose_secret(),
        *root.snapshot_key().expose_secret(),
    ]
}

/// Every way a key's bytes could leak into text: hex (both cases), Rust's array `Debug`
/// and a few contiguous bytes of each.
fn leak_patterns(bytes: &[u8; KEY_LEN]) -> Vec<String> {
    let lower = bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    vec![
        lower[..16].to_string(),
        lower[..16].to_uppercase(),
        format!("{:?}", &bytes[..4])
            .trim_matches(['[', ']'])
            .to_string(),
    ]
}

proptest! {
    #[test]
    fn subkeys_differ_per_label(root in any::<[u8; KEY_LEN]>()) {
        let key = ArchiveKey::from_bytes(root);
        let subkeys = all_subkeys(&key);
        for (i, a) in subkeys.iter().enumerate() {
            prop_assert_ne!(a, &root);
            for b in &subkeys[i + 1..] {
                prop_assert_ne!(a, b);
            }
        }
        let fp = key.fingerprint();
        prop_assert_ne!(&fp.as_bytes()[..], &root[..16]);
    }

    #[test]
    fn subkeys_differ_per_root(a in any::<[u8; KEY_LEN]>(), b in any::<[u8; KEY_LEN]>()) {
        prop_assume!(a != b);
        let (ka, kb) = (ArchiveKey::from_bytes(a), ArchiveKey::from_bytes(b));
        for (x, y) in all_subkeys(&ka).iter().zip(all_subkeys(&kb).iter()) {
            prop_assert_ne!(x, y);
        }
        prop_assert_ne!(ka.fingerprint(), kb.fingerprint());
    }

    #[test]
    fn derivation_is_deterministic(root in any::<[u8; KEY_LEN]>()) {
        let (a, b) = (ArchiveKey::from_bytes(root), ArchiveKey::from_bytes(root));
        prop_assert_eq!(all_subkeys(&a), all_subkeys(&b));
        prop_assert_eq!(a.fingerprint(), b.fingerprint());
    }

    /// K-1: `Debug` (plain and pretty, and nested in a container) never shows key bytes.
    #[test]
    fn debug_output_holds_no_key_bytes(root in any::<[u8; KEY_LEN]>()) {
        let key = ArchiveKey::from_bytes(root);
        let chunker = key.chunker_key();
        let ids = key.block_id_key();
        let block = key.block_key();
        let snap = key.snapshot_key();
        let texts = [
            format!("{key:?}"), format!("{key:#?}"), format!("{:?}", Some(&key)),
            format!("{chunker:?}"), format!("{ids:?}"), format!("{block:?}"), format!("{snap:?}"),
            format!("{:?}", (chunker.clone(), vec![block.clone()])),
        ];
        let secrets = [root, *chunker.expose_secret(), *ids.expose_secret(),
                       *block.expose_secret(), *snap.expose_secret()];
        for text in &texts {
            prop_assert!(text.contains("[REDACTED]"));
            for secret in &secrets {
                for pattern in leak_patterns(secret) {
                    prop_assert!(!text.contains(&pattern), "{text} leaks {pattern}");
                }
            }
        }
    }
}

#[test]
fn each_type_names_itself_in_debug() {
    let bytes = [9u8; KEY_LEN];
    assert_eq!(
        format!("{:?}", ArchiveKey::from_bytes(bytes)),
        "ArchiveKey([REDACTED])"
    );
    assert_eq!(
        format!("{:?}", ChunkerKey::from_bytes(bytes)),
        "ChunkerKey([REDACTED])"
    );
    assert_eq!(
        format!("{:?}", BlockIdKey::from_bytes(bytes)),
        "BlockIdKey([REDACTED])"
    );
    assert_eq!(
        format!("{:?}", BlockKey::from_bytes(bytes)),
        "BlockKey([REDACTED])"
    );
    assert_eq!(
        format!("{:?}", SnapshotKey::from_bytes(bytes)),
        "SnapshotKey([REDACTED])"
    );
}
