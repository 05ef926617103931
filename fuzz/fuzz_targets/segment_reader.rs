//! F-3: arbitrary bytes as a segment (active or sealed) into open, lookup, read and verify;
//! and a valid log cut at an arbitrary offset ("open after truncation"). Records or errors
//! only: never a panic, never an allocation beyond the input's size and the payload cap.
#![no_main]

use std::sync::LazyLock;

use cairn_archive::{Archive, Config, MemoryStorage, Storage, segment_name};
use libfuzzer_sys::fuzz_target;

const ID: [u8; 16] = *b"fuzz archive id!";

/// A valid active segment of a few records, for the truncation mode.
static VALID: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let storage = MemoryStorage::new();
    let config = Config::new(ID);
    if let Ok((mut log, _)) = Archive::open(storage.clone(), config) {
        for i in 0..6u8 {
            let _ = log.append(1, &[i; 32], &vec![i; usize::from(i) * 40]);
            if i % 2 == 1 {
                let _ = log.commit();
            }
        }
    }
    storage.get(&segment_name(0, true)).unwrap_or_default()
});

fn exercise(storage: MemoryStorage) {
    let Ok((mut log, _)) = Archive::open(storage, Config::new(ID)) else {
        return;
    };
    for i in 0..6u8 {
        let _ = log.get(&[i; 32]);
    }
    let _ = log.verify(|_, _, _| Ok(()));
    let _ = log.append(2, &[9; 32], b"after");
    let _ = log.commit();
}

fuzz_target!(|input: (u8, u16, &[u8])| {
    let (mode, cut, data) = input;
    let storage = MemoryStorage::new();
    match mode % 3 {
        0 => storage.put(&segment_name(0, true), data.to_vec()),
        1 => storage.put(&segment_name(0, false), data.to_vec()),
        _ => {
            let valid = &*VALID;
            let cut = usize::from(cut) % (valid.len() + 1);
            let mut bytes = valid[..cut].to_vec();
            bytes.extend_from_slice(data);
            storage.put(&segment_name(0, true), bytes);
        }
    }
    let _ = storage.list();
    exercise(storage);
});
