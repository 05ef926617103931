//! B-1 to B-6 and B-11 of the catalogue: round trips through segment rotation, framing,
//! torn and garbage tails, bit rot, splices, and storage failures.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use cairn_archive::format::{RECORD_OVERHEAD, SEGMENT_HEADER_LEN};
use cairn_archive::*;
use proptest::prelude::*;

const ID: [u8; 16] = *b"cairn test arch!";

fn config(target: u64) -> Config {
    Config::new(ID).with_segment_target(target).unwrap()
}

fn key(i: u64) -> Key {
    *blake3::hash(&i.to_le_bytes()).as_bytes()
}

fn payload(i: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in &mut out {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    out
}

/// Appends `sizes` as records 0.., committing every `batch`; returns the storage.
fn build(sizes: &[usize], batch: usize, target: u64) -> MemoryStorage {
    let storage = MemoryStorage::new();
    let (mut log, _) = Archive::open(storage.clone(), config(target)).unwrap();
    for (i, &len) in sizes.iter().enumerate() {
        log.append(1, &key(i as u64), &payload(i as u64, len))
            .unwrap();
        if (i + 1) % batch == 0 {
            log.commit().unwrap();
        }
    }
    log.commit().unwrap();
    storage
}

fn check_all(storage: &MemoryStorage, sizes: &[usize], target: u64) {
    let (mut log, recovery) = Archive::open(storage.clone(), config(target)).unwrap();
    assert_eq!(recovery, Recovery::default());
    for (i, &len) in sizes.iter().enumerate() {
        assert_eq!(
            log.get(&key(i as u64)).unwrap().unwrap(),
            payload(i as u64, len),
            "record {i}"
        );
    }
    let report = log.verify(|_, _, _| Ok(())).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.records_ok, sizes.len() as u64);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// B-1: random records through segment rotation, reopened and read back; the same input
    /// gives byte-identical segments.
    #[test]
    fn b1_round_trip_through_rotation(
        sizes in proptest::collection::vec(prop_oneof![Just(0usize), Just(1), 0..5000usize], 1..80),
        batch in 1..10usize,
    ) {
        let a = build(&sizes, batch, 8 << 10);
        let b = build(&sizes, batch, 8 << 10);
        for name in a.list().unwrap() {
            prop_assert_eq!(a.get(&name), b.get(&name), "segment {} differs", name);
        }
        check_all(&a, &sizes, 8 << 10);
    }
}

#[test]
fn b1_limits_and_reserved_kinds() {
    let storage = MemoryStorage::new();
    let (mut log, _) = Archive::open(storage.clone(), config(64 << 20)).unwrap();
    log.append(1, &key(0), &vec![7u8; MAX_PAYLOAD_LEN]).unwrap();
    assert!(matches!(
        log.append(1, &key(1), &vec![7u8; MAX_PAYLOAD_LEN + 1]),
        Err(ArchiveError::PayloadTooLarge)
    ));
    assert!(matches!(
        log.append(0xF0, &key(2), b"x"),
        Err(ArchiveError::ReservedKind)
    ));
    log.commit().unwrap();
    drop(log);
    let (mut log, _) = Archive::open(storage, config(64 << 20)).unwrap();
    assert_eq!(log.get(&key(0)).unwrap().unwrap().len(), MAX_PAYLOAD_LEN);
    assert!(Config::new(ID).with_segment_target(1024).is_err());
}

#[test]
fn b2_length_past_eof_stops_at_the_previous_record() {
    let sizes = [100, 200, 300];
    let storage = build(&sizes, 3, 1 << 20);
    let name = segment_name(0, true);
    let mut bytes = storage.get(&name).unwrap();
    // Append a record header claiming 1 MiB of payload, then end the file.
    let header = format::RecordHeader {
        len: 1 << 20,
        kind: 1,
        seq: 4,
        key: key(9),
        elided: false,
    };
    bytes.extend_from_slice(&header.encode());
    bytes.extend_from_slice(&[1, 2, 3]);
    storage.put(&name, bytes);
    let (mut log, recovery) = Archive::open(storage, config(1 << 20)).unwrap();
    assert_eq!(recovery.truncated_bytes, 51);
    assert_eq!(log.get(&key(2)).unwrap().unwrap(), payload(2, 300));
    assert!(log.get(&key(9)).unwrap().is_none());
}

/// The records of `sizes` in one batch each, so every record is acknowledged separately.
fn one_by_one(sizes: &[usize]) -> (MemoryStorage, Vec<u64>) {
    let storage = MemoryStorage::new();
    let (mut log, _) = Archive::open(storage.clone(), config(1 << 20)).unwrap();
    let mut ends = Vec::new();
    for (i, &len) in sizes.iter().enumerate() {
        log.append(1, &key(i as u64), &payload(i as u64, len))
            .unwrap();
        log.commit().unwrap();
        ends.push(storage.get(&segment_name(0, true)).unwrap().len() as u64);
    }
    (storage, ends)
}

/// B-3: truncate the active segment at every byte offset inside its last two records (and
/// their commits); recovery keeps exactly the records committed before the cut, reports the
/// cut, and the next append lands on a clean boundary.
#[test]
fn b3_torn_tail_at_every_offset() {
    let sizes = [10, 700, 33, 1500, 64];
    let (storage, ends) = one_by_one(&sizes);
    let name = segment_name(0, true);
    let full = storage.get(&name).unwrap();
    let from = ends[ends.len() - 3] as usize;
    let mut cases = 0;
    for cut in from..full.len() {
        let s = MemoryStorage::new();
        s.put(&name, full[..cut].to_vec());
        let (mut log, recovery) = Archive::open(s.clone(), config(1 << 20)).unwrap();
        let survivors = ends.iter().filter(|&&e| e as usize <= cut).count();
        let kept_end = if survivors == 0 {
            SEGMENT_HEADER_LEN as u64
        } else {
            ends[survivors - 1]
        };
        assert_eq!(recovery.truncated_bytes, cut as u64 - kept_end, "cut {cut}");
        for (i, &len) in sizes.iter().enumerate() {
            let got = log.get(&key(i as u64)).unwrap();
            if i < survivors {
                assert_eq!(got.unwrap(), payload(i as u64, len), "cut {cut} record {i}");
            } else {
                assert!(got.is_none(), "cut {cut}: record {i} must not be visible");
            }
        }
        // The next append starts at a clean boundary and survives another reopen.
        log.append(2, &key(100), b"after recovery").unwrap();
        log.commit().unwrap();
        drop(log);
        let (mut log, recovery) = Archive::open(s, config(1 << 20)).unwrap();
        assert_eq!(recovery.truncated_bytes, 0);
        assert_eq!(log.get(&key(100)).unwrap().unwrap(), b"after recovery");
        assert!(log.verify(|_, _, _| Ok(())).unwrap().is_clean());
        cases += 1;
    }
    assert!(cases > 1000);
}

/// B-4: 1..64 KiB of zeros or random bytes after the last commit are cut and never read as
/// records.
#[test]
fn b4_garbage_tail() {
    let sizes = [100, 2000, 5];
    let (storage, _) = one_by_one(&sizes);
    let name = segment_name(0, true);
    let full = storage.get(&name).unwrap();
    for len in [1usize, 7, 52, 4096, 64 << 10] {
        for garbage in [vec![0u8; len], payload(len as u64, len)] {
            let s = MemoryStorage::new();
            let mut bytes = full.clone();
            bytes.extend_from_slice(&garbage);
            s.put(&name, bytes);
            let (mut log, recovery) = Archive::open(s, config(1 << 20)).unwrap();
            assert_eq!(recovery.truncated_bytes, len as u64);
            assert_eq!(recovery.dropped_records, 0);
            for (i, &l) in sizes.iter().enumerate() {
                assert_eq!(
                    log.get(&key(i as u64)).unwrap().unwrap(),
                    payload(i as u64, l)
                );
            }
            assert!(log.verify(|_, _, _| Ok(())).unwrap().is_clean());
        }
    }
}

/// Committed records after damage in the active segment: an error, never a silent cut.
#[test]
fn damage_before_committed_records_is_not_truncated() {
    let (storage, ends) = one_by_one(&[100, 200, 300]);
    let name = segment_name(0, true);
    let mut bytes = storage.get(&name).unwrap();
    bytes[ends[0] as usize + 60] ^= 0x40; // inside record 1's payload
    storage.put(&name, bytes.clone());
    match Archive::open(storage.clone(), config(1 << 20)) {
        Err(ArchiveError::Corrupt {
            segment: 0, offset, ..
        }) => assert_eq!(offset, ends[0]),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("damage must not be truncated away"),
    }
    assert_eq!(storage.get(&name).unwrap(), bytes, "nothing was cut");
}

/// B-5: flip every bit of a small sealed segment. Verify flags exactly the damaged record (or
/// the header, index or trailer), and every other record stays readable.
#[test]
fn b5_every_bit_of_a_sealed_segment() {
    let sizes = [300, 5, 900, 64, 1200, 17, 1500, 400];
    let storage = build(&sizes, 2, 4 << 10);
    let (log, _) = Archive::open(storage.clone(), config(4 << 10)).unwrap();
    assert!(log.sealed_segments() >= 1);
    drop(log);
    let name = segment_name(0, false);
    let original = storage.get(&name).unwrap();
    assert!(
        original.len() <= 4096 + 2048,
        "a small segment: {} bytes",
        original.len()
    );
    // Record offsets in segment 0 (data and commits), from a clean scan.
    let mut starts = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN;
    while let Ok((h, _)) = format::decode_record(&original[pos..]) {
        starts.push((pos, h.framed_len(), h.kind, h.key));
        pos += h.framed_len();
    }
    let records_end = pos;
    let mut flips = 0;
    for bit in 0..original.len() * 8 {
        let mut bytes = original.clone();
        bytes[bit / 8] ^= 1 << (bit % 8);
        let s = MemoryStorage::new();
        for n in storage.list().unwrap() {
            s.put(&n, storage.get(&n).unwrap());
        }
        s.put(&name, bytes);
        let (mut log, _) =
            Archive::open(s, config(4 << 10)).unwrap_or_else(|e| panic!("bit {bit}: {e}"));
        let report = log.verify(|_, _, _| Ok(())).unwrap();
        let at = bit / 8;
        let hit = starts.iter().find(|(p, l, _, _)| at >= *p && at < p + l);
        let flagged: Vec<u64> = report.damaged.iter().map(|d| d.offset).collect();
        match hit {
            Some((p, _, _, _)) => assert!(
                flagged.contains(&(*p as u64)),
                "bit {bit}: record at {p} not flagged: {report:?}"
            ),
            None => assert!(
                !report.damaged.is_empty(),
                "bit {bit} in header/footer not flagged"
            ),
        }
        // Every record outside the flipped one reads back.
        for (i, &len) in sizes.iter().enumerate() {
            let k = key(i as u64);
            let damaged_here = hit.is_some_and(|(_, _, kind, hk)| *kind == 1 && *hk == k);
            if !damaged_here {
                assert_eq!(
                    log.get(&k).unwrap().unwrap(),
                    payload(i as u64, len),
                    "bit {bit} record {i}"
                );
            }
        }
        let _ = records_end;
        flips += 1;
    }
    assert_eq!(flips, original.len() * 8);
}

/// B-6: records dropped, duplicated, reordered or swapped, and a segment from another archive,
/// are detected by sequence numbers, the chain and the archive id.
#[test]
fn b6_splices_are_detected() {
    let sizes = [100, 200, 300, 400];
    let (storage, ends) = one_by_one(&sizes);
    let name = segment_name(0, true);
    let full = storage.get(&name).unwrap();
    let h = SEGMENT_HEADER_LEN;
    let rec = |i: usize| -> Vec<u8> {
        let start = if i == 0 { h } else { ends[i - 1] as usize };
        full[start..ends[i] as usize].to_vec()
    };
    let header = full[..h].to_vec();
    let cat = |parts: &[Vec<u8>]| -> Vec<u8> {
        let mut v = header.clone();
        for p in parts {
            v.extend_from_slice(p);
        }
        v
    };
    let splices = [
        ("drop", cat(&[rec(0), rec(2), rec(3)])),
        ("duplicate", cat(&[rec(0), rec(1), rec(1), rec(2), rec(3)])),
        ("reorder", cat(&[rec(0), rec(2), rec(1), rec(3)])),
        ("swap last two", cat(&[rec(0), rec(1), rec(3), rec(2)])),
    ];
    for (what, bytes) in splices {
        let s = MemoryStorage::new();
        s.put(&name, bytes);
        match Archive::open(s, config(1 << 20)) {
            Err(ArchiveError::Corrupt { .. }) => {}
            Ok((mut log, recovery)) => {
                // Recovery may only have cut a tail; what remains must verify, and the
                // records past the splice are not visible.
                assert!(recovery.truncated_bytes > 0, "{what}: undetected");
                assert!(log.verify(|_, _, _| Ok(())).unwrap().is_clean());
                assert!(log.get(&key(3)).unwrap().is_none(), "{what}");
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
    // A segment from another archive.
    let other = Config::new(*b"another archive!");
    let s = MemoryStorage::new();
    s.put(&name, full.clone());
    assert!(matches!(
        Archive::open(s, other),
        Err(ArchiveError::Corrupt { .. })
    ));
    // A sealed segment replayed in place of another (segment 1 copied over segment 0).
    let sealed = build(&[3000, 3000, 3000, 3000], 1, 4 << 10);
    let s0 = sealed.get(&segment_name(0, false)).unwrap();
    let s1 = sealed.get(&segment_name(1, false)).unwrap();
    let _ = s0;
    sealed.put(&segment_name(0, false), s1);
    assert!(matches!(
        Archive::open(sealed, config(4 << 10)),
        Err(ArchiveError::Corrupt { .. })
    ));
}

/// B-11: a failed sync poisons the handle; it never reports success afterwards.
#[test]
fn b11_sync_failure_poisons() {
    use cairn_archive::faulty::{Fault, FaultyStorage};
    // Ops: create = 1; then write (header and batch) + sync for the first commit.
    let storage = FaultyStorage::with_fault(3, Fault::Io, 1);
    let (mut log, _) = Archive::open(storage.clone(), config(1 << 20)).unwrap();
    log.append(1, &key(0), b"never acknowledged").unwrap();
    assert!(log.commit().is_err());
    assert!(matches!(log.commit(), Err(ArchiveError::Poisoned)));
    assert!(matches!(
        log.append(1, &key(1), b"x"),
        Err(ArchiveError::Poisoned)
    ));
    assert!(matches!(
        log.verify(|_, _, _| Ok(())),
        Err(ArchiveError::Poisoned)
    ));
    assert_eq!(storage.fired(), Some(Fault::Io));
}

#[test]
fn record_overhead_is_as_documented() {
    assert_eq!(RECORD_OVERHEAD, 52);
}

/// `append_owned` writes exactly what `append` writes.
#[test]
fn append_owned_is_byte_identical() {
    let sizes = [10usize, 300 << 10, 0, 5000, 1 << 20, 70];
    let run = |owned: bool| {
        let storage = MemoryStorage::new();
        let (mut log, _) = Archive::open(storage.clone(), config(512 << 10)).unwrap();
        for (i, &len) in sizes.iter().enumerate() {
            let p = payload(i as u64, len);
            if owned {
                log.append_owned(1, &key(i as u64), p).unwrap();
            } else {
                log.append(1, &key(i as u64), &p).unwrap();
            }
            log.commit().unwrap();
        }
        storage
    };
    let (a, b) = (run(false), run(true));
    assert_eq!(a.list().unwrap(), b.list().unwrap());
    for name in a.list().unwrap() {
        assert_eq!(a.get(&name), b.get(&name), "{name}");
    }
    check_all(&b, &sizes, 512 << 10);
}

/// Records of one kind are listed from the indexes, in log order, across sealed segments and the
/// active one, including after reopening.
#[test]
fn records_of_kind_from_indexes() {
    let storage = MemoryStorage::new();
    let (mut log, _) = Archive::open(storage.clone(), config(4 << 10)).unwrap();
    let mut want = Vec::new();
    for i in 0..60u64 {
        let kind = if i % 7 == 0 { 2 } else { 1 };
        let loc = log.append(kind, &key(i), &payload(i, 300)).unwrap();
        if kind == 2 {
            want.push((key(i), loc));
        }
        if i % 5 == 4 {
            log.commit().unwrap();
        }
    }
    log.commit().unwrap();
    assert!(log.sealed_segments() >= 2);
    assert_eq!(log.records_of_kind(2).unwrap(), want);
    drop(log);
    let (log, _) = Archive::open(storage, config(4 << 10)).unwrap();
    assert_eq!(log.records_of_kind(2).unwrap(), want);
    assert_eq!(log.records_of_kind(9).unwrap(), vec![]);
}

/// Shared-reference reads see committed records only.
#[test]
fn read_committed_refuses_uncommitted_records() {
    let (mut log, _) = Archive::open(MemoryStorage::new(), config(1 << 20)).unwrap();
    let a = log.append(1, &key(1), b"committed").unwrap();
    log.commit().unwrap();
    let b = log.append(1, &key(2), b"not yet").unwrap();
    assert_eq!(log.read_committed(&a).unwrap(), b"committed");
    assert!(matches!(
        log.read_committed(&b),
        Err(ArchiveError::Uncommitted)
    ));
    assert_eq!(log.read(&b).unwrap(), b"not yet");
    log.commit().unwrap();
    assert_eq!(log.read_committed(&b).unwrap(), b"not yet");
}

/// The in-memory index cache answers exactly like the on-disk binary search: for every record
/// (through several sealed segments, and re-appended keys whose last record wins), for absent
/// keys, whether the segments were sealed in this process or found at open.
#[test]
fn index_cache_answers_like_the_disk_index() {
    let sizes: Vec<usize> = (0..400).map(|i| 100 + (i * 37) % 900).collect();
    let storage = build(&sizes, 7, 8 << 10);
    // Re-append a few keys with new payloads: the last record for a key wins.
    {
        let (mut log, _) = Archive::open(storage.clone(), config(8 << 10)).unwrap();
        for i in [3u64, 150, 399] {
            log.append(1, &key(i), &payload(i + 1000, 50)).unwrap();
        }
        log.commit().unwrap();
    }
    let (plain, _) = Archive::open(storage.clone(), config(8 << 10)).unwrap();
    let (cached, _) =
        Archive::open(storage.clone(), config(8 << 10).with_index_cache(true)).unwrap();
    assert!(plain.sealed_segments() > 3);
    for i in 0..sizes.len() as u64 + 50 {
        let k = key(i);
        // Twice: the first search fills the cache, the second uses it.
        assert_eq!(
            cached.locate(&k).unwrap(),
            plain.locate(&k).unwrap(),
            "key {i}"
        );
        assert_eq!(
            cached.locate(&k).unwrap(),
            plain.locate(&k).unwrap(),
            "key {i}"
        );
    }
    // Segments sealed by a caching archive are cached from their entries in memory.
    let fresh = MemoryStorage::new();
    let (mut log, _) =
        Archive::open(fresh.clone(), config(8 << 10).with_index_cache(true)).unwrap();
    for i in 0..200u64 {
        log.append(1, &key(i), &payload(i, 300)).unwrap();
        log.commit().unwrap();
    }
    let (reopened, _) = Archive::open(fresh, config(8 << 10)).unwrap();
    for i in 0..220u64 {
        assert_eq!(
            log.locate(&key(i)).unwrap(),
            reopened.locate(&key(i)).unwrap(),
            "key {i}"
        );
    }
}
