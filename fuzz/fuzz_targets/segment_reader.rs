//! F-3: arbitrary bytes as a segment (active, sealed, or a compacted generation) into open,
//! lookup, read, verify and compaction; a valid log cut at an arbitrary offset ("open after
//! truncation"); and a valid compacted generation overwritten at an arbitrary offset. Records
//! or errors only: never a panic, never an allocation beyond the input's size and the payload
//! cap.
#![no_main]

use std::sync::LazyLock;

use cairn_archive::{Archive, Config, MemoryStorage, Storage, generation_name, segment_name};
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

/// A valid sealed segment, compacted once (every other record elided), as generation 1.
static COMPACTED: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let storage = MemoryStorage::new();
    let Ok(config) = Config::new(ID).with_segment_target(4096) else {
        return Vec::new();
    };
    if let Ok((mut log, _)) = Archive::open(storage.clone(), config) {
        for i in 0..12u8 {
            let _ = log.append(1, &[i; 32], &vec![i; 500]);
            let _ = log.commit();
        }
        let _ = log.compact(0, |k, _| k[0] % 2 == 0);
    }
    storage.get(&generation_name(0, 1)).unwrap_or_default()
});

fn exercise(storage: MemoryStorage) {
    let Ok((mut log, _)) = Archive::open(storage, Config::new(ID)) else {
        return;
    };
    for i in 0..6u8 {
        let _ = log.get(&[i; 32]);
    }
    let _ = log.verify(|_, _, _| Ok(()));
    let _ = log.compact(0, |k, _| k[0] % 3 == 0);
    let _ = log.segment_records(0);
    let _ = log.verify(|_, _, _| Ok(()));
    let _ = log.append(2, &[9; 32], b"after");
    let _ = log.commit();
}

fuzz_target!(|input: (u8, u16, &[u8])| {
    let (mode, cut, data) = input;
    let storage = MemoryStorage::new();
    match mode % 5 {
        0 => storage.put(&segment_name(0, true), data.to_vec()),
        1 => storage.put(&segment_name(0, false), data.to_vec()),
        2 => storage.put(&generation_name(0, 1), data.to_vec()),
        3 => {
            let mut bytes = COMPACTED.clone();
            let at = usize::from(cut) % (bytes.len() + 1);
            let end = (at + data.len()).min(bytes.len());
            bytes[at..end].copy_from_slice(&data[..end - at]);
            storage.put(&generation_name(0, 1), bytes);
        }
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
