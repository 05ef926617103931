//! Compaction (`docs/format/archive.md`, "Compaction"): elided records, segment generations,
//! and crash points. A crash at any step of a compaction loses nothing that was not elided,
//! and the chain head every client remembers stays valid (B-8).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::collections::BTreeSet;

use cairn_archive::faulty::{Fault, FaultyStorage};
use cairn_archive::format::{self, ELIDED_PAYLOAD_LEN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use cairn_archive::*;

const ID: [u8; 16] = *b"compaction test!";
const TARGET: u64 = 16 << 10;
const RECORDS: u64 = 60;

fn config() -> Config {
    Config::new(ID).with_segment_target(TARGET).unwrap()
}

fn key(i: u64) -> Key {
    *blake3::hash(&i.to_le_bytes()).as_bytes()
}

fn payload(i: u64) -> Vec<u8> {
    let len = 200 + ((i * 977) % 2500) as usize;
    (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
}

/// Every third record is dead.
fn dead(i: u64) -> bool {
    i.is_multiple_of(3)
}

fn index_of(k: &Key) -> u64 {
    (0..RECORDS).find(|&i| key(i) == *k).unwrap()
}

/// `RECORDS` records, a commit every 4, over several sealed segments.
fn build<S: Storage>(storage: S) -> Commit {
    let (mut log, _) = Archive::open(storage, config()).unwrap();
    for i in 0..RECORDS {
        log.append(1, &key(i), &payload(i)).unwrap();
        if (i + 1).is_multiple_of(4) {
            log.commit().unwrap();
        }
    }
    let commit = log.commit().unwrap();
    assert!(
        log.sealed_segments() >= 3,
        "the workload must seal segments"
    );
    commit
}

/// Compacts every sealed segment, eliding the dead records.
fn compact_all<S: Storage>(log: &mut Archive<S>) -> Result<Vec<Compaction>, ArchiveError> {
    (0..log.sealed_segments())
        .map(|s| log.compact(s, |k, _| dead(index_of(k))))
        .collect()
}

/// What any state of the storage must show: the chain head of `commit`, every live record
/// byte for byte, every dead record either whole or elided, and a clean verify.
fn check(storage: MemoryStorage, commit: Commit, what: &str) -> (u64, Recovery) {
    let (mut log, recovery) =
        Archive::open(storage, config()).unwrap_or_else(|e| panic!("{what}: open: {e}"));
    assert_eq!(log.last_commit(), commit, "{what}: the chain head moved");
    let mut elided = 0;
    for i in 0..RECORDS {
        let loc = log.locate(&key(i)).unwrap().unwrap();
        match log.read(&loc) {
            Ok(bytes) => assert_eq!(bytes, payload(i), "{what}: record {i}"),
            Err(ArchiveError::Elided { .. }) => {
                assert!(dead(i), "{what}: live record {i} was elided");
                assert!(loc.elided);
                elided += 1;
            }
            Err(e) => panic!("{what}: record {i}: {e}"),
        }
    }
    let report = log
        .verify(|_, k, p| {
            (p == payload(index_of(k)))
                .then_some(())
                .ok_or_else(|| "payload".to_owned())
        })
        .unwrap();
    assert!(report.is_clean(), "{what}: {report:?}");
    assert_eq!(report.chain_head, commit.chain_head);
    assert_eq!(report.records_elided, elided, "{what}");
    assert_eq!(report.records_ok + report.records_elided, RECORDS, "{what}");
    (elided, recovery)
}

#[test]
fn compaction_elides_keeps_the_chain_and_shrinks_the_segment() {
    let storage = MemoryStorage::new();
    let commit = build(storage.clone());
    let (mut log, _) = Archive::open(storage.clone(), config()).unwrap();
    let before: Vec<u64> = (0..log.sealed_segments())
        .map(|s| log.segment_len(s).unwrap())
        .collect();
    let done = compact_all(&mut log).unwrap();
    for (c, &len) in done.iter().zip(&before) {
        assert_eq!(c.bytes_before, len);
        assert!(c.elided > 0, "{c:?}");
        assert!(c.bytes_after < c.bytes_before, "{c:?}");
        assert_eq!(c.generation, 1);
        assert_eq!(log.segment_generation(c.segment), Some(1));
        // Only the new generation is left.
        assert!(storage.get(&generation_name(c.segment, 0)).is_none());
        assert!(storage.get(&generation_name(c.segment, 1)).is_some());
    }
    // The handle that compacted answers as a reopened one does.
    assert_eq!(log.last_commit(), commit);
    for i in 0..RECORDS {
        let got = log.get(&key(i));
        if dead(i) && log.locate(&key(i)).unwrap().unwrap().segment < log.active_segment() {
            assert!(matches!(got, Err(ArchiveError::Elided { .. })), "{i}");
        } else {
            assert_eq!(got.unwrap().unwrap(), payload(i), "{i}");
        }
    }
    // The archive goes on: appends after a compaction chain from the same head.
    log.append(1, &key(1000), b"after").unwrap();
    let after = log.commit().unwrap();
    drop(log);
    let (mut log, recovery) = Archive::open(storage.clone(), config()).unwrap();
    assert_eq!(recovery, Recovery::default());
    assert_eq!(log.last_commit(), after);
    assert_eq!(log.get(&key(1000)).unwrap().unwrap(), b"after");
    assert!(log.verify(|_, _, _| Ok(())).unwrap().is_clean());
    // Compacting again elides nothing new and rewrites nothing.
    let again = log.compact(0, |k, _| dead(index_of(k))).unwrap();
    assert_eq!((again.elided, again.generation), (0, 1));
    // Eliding more writes generation 2.
    let more = log.compact(0, |_, _| true).unwrap();
    assert_eq!(more.generation, 2);
    assert!(storage.get(&generation_name(0, 1)).is_none());
    assert!(log.verify(|_, _, _| Ok(())).unwrap().is_clean());
}

#[test]
fn records_of_elided_kinds_are_listed_as_elided() {
    let storage = MemoryStorage::new();
    build(storage.clone());
    let (mut log, _) = Archive::open(storage, config().with_index_cache(true)).unwrap();
    let sealed_before: BTreeSet<u64> = log
        .records_of_kind(1)
        .unwrap()
        .iter()
        .filter(|(_, l)| l.segment < log.active_segment())
        .map(|(k, _)| index_of(k))
        .collect();
    compact_all(&mut log).unwrap();
    let listed = log.records_of_kind(1).unwrap();
    assert_eq!(listed.len() as u64, RECORDS);
    for (k, loc) in listed {
        let i = index_of(&k);
        assert_eq!(loc.elided, dead(i) && sealed_before.contains(&i), "{i}");
        if loc.elided {
            assert_eq!(loc.len as usize, ELIDED_PAYLOAD_LEN);
        }
    }
}

#[test]
fn the_active_segment_is_never_compacted() {
    let storage = MemoryStorage::new();
    build(storage.clone());
    let (mut log, _) = Archive::open(storage, config()).unwrap();
    let active = log.active_segment();
    assert!(matches!(
        log.compact(active, |_, _| true),
        Err(ArchiveError::NotSealed(s)) if s == active
    ));
    assert!(matches!(
        log.compact(active + 1, |_, _| true),
        Err(ArchiveError::NoSegment(_))
    ));
}

/// B-9 for compaction: a fault at every storage operation of compacting all segments, in every
/// fault mode. After restart, every live record reads back, the chain head is the one clients
/// remember, and each segment is either the old generation or the new one, never a mix.
#[test]
fn a_crash_at_any_step_of_a_compaction_loses_nothing_live() {
    // How many operations building and compacting take, without faults.
    let clean = FaultyStorage::new();
    let commit = build(clean.clone());
    let built = clean.ops();
    let (mut log, _) = Archive::open(clean.clone(), config()).unwrap();
    compact_all(&mut log).unwrap();
    drop(log);
    let total = clean.ops();
    assert!(total > built + 6, "compaction must do storage work");
    let all_dead: u64 = (0..RECORDS).filter(|&i| dead(i)).count() as u64;
    let (elided_clean, _) = check(clean.surviving(), commit, "clean");
    assert!(elided_clean > 0 && elided_clean <= all_dead);

    let mut tried = 0;
    for at in built + 1..=total {
        for fault in [Fault::Crash, Fault::PowerLoss, Fault::TornWrite, Fault::Io] {
            let storage = FaultyStorage::with_fault(at, fault, at * 7 + 1);
            assert_eq!(build(storage.clone()), commit);
            let result = Archive::open(storage.clone(), config())
                .map_err(|e| e.to_string())
                .and_then(|(mut log, _)| compact_all(&mut log).map_err(|e| e.to_string()));
            assert_eq!(storage.fired(), Some(fault), "fault at {at} did not fire");
            assert!(result.is_err(), "{fault:?} at {at} went unnoticed");
            let what = format!("{fault:?} at op {at} ({:?})", storage.log().last());
            let (elided, recovery) = check(storage.surviving(), commit, &what);
            assert!(elided <= elided_clean, "{what}");
            // A second open finds nothing left to clean up, and a compaction rerun finishes.
            let survivor = storage.surviving();
            let (mut log, _) = Archive::open(survivor.clone(), config()).unwrap();
            compact_all(&mut log).unwrap_or_else(|e| panic!("{what}: rerun: {e}"));
            drop(log);
            let (elided, again) = check(survivor, commit, &what);
            assert_eq!(elided, elided_clean, "{what}: rerun");
            assert!(again.removed_generations.is_empty(), "{what}: {again:?}");
            let _ = recovery;
            tried += 1;
        }
    }
    assert!(tried >= 24, "only {tried} crash points");
}

#[test]
fn open_keeps_the_newest_generation_and_removes_the_rest() {
    let storage = MemoryStorage::new();
    let commit = build(storage.clone());
    let g0 = storage.get(&generation_name(0, 0)).unwrap();
    let (mut log, _) = Archive::open(storage.clone(), config()).unwrap();
    log.compact(0, |k, _| dead(index_of(k))).unwrap();
    drop(log);
    // A crash between the publication and the removal leaves both, and an unfinished
    // publication of another segment leaves a staged name.
    storage.put(&generation_name(0, 0), g0.clone());
    storage.put(&format!("{}.tmp", generation_name(1, 1)), vec![1, 2, 3]);
    let (elided, recovery) = check(storage.clone(), commit, "two generations");
    assert!(elided > 0);
    let mut removed = recovery.removed_generations.clone();
    removed.sort();
    assert_eq!(
        removed,
        [
            generation_name(0, 0),
            format!("{}.tmp", generation_name(1, 1))
        ]
    );
    assert!(storage.get(&generation_name(0, 0)).is_none());

    // A newest generation whose footer is damaged is still read (by scanning), and the older
    // one is kept rather than removed.
    let mut g1 = storage.get(&generation_name(0, 1)).unwrap();
    let last = g1.len() - 1;
    g1[last] ^= 0xFF;
    storage.put(&generation_name(0, 1), g1);
    storage.put(&generation_name(0, 0), g0);
    let (mut log, recovery) = Archive::open(storage.clone(), config()).unwrap();
    assert_eq!(log.last_commit(), commit);
    for i in (0..RECORDS).filter(|&i| !dead(i)) {
        assert_eq!(log.get(&key(i)).unwrap().unwrap(), payload(i), "{i}");
    }
    // verify names the damaged trailer, and only segment 0: the chain goes on from its last
    // commit, so the segments after it check clean.
    let report = log.verify(|_, _, _| Ok(())).unwrap();
    assert!(!report.damaged.is_empty());
    assert!(report.damaged.iter().all(|d| d.segment == 0), "{report:?}");
    assert_eq!(report.chain_head, commit.chain_head);
    drop(log);
    assert_eq!(recovery.rescanned_segments, [0]);
    assert_eq!(recovery.kept_generations, [generation_name(0, 0)]);
    assert!(storage.get(&generation_name(0, 0)).is_some());
}

#[test]
fn a_generation_under_another_name_is_refused() {
    let storage = MemoryStorage::new();
    build(storage.clone());
    let (mut log, _) = Archive::open(storage.clone(), config()).unwrap();
    log.compact(0, |k, _| dead(index_of(k))).unwrap();
    drop(log);
    // Generation 1's bytes under generation 0's name (an old backup restored over it, say).
    let g1 = storage.get(&generation_name(0, 1)).unwrap();
    storage.remove(&generation_name(0, 1)).unwrap();
    storage.put(&generation_name(0, 0), g1);
    let err = Archive::open(storage, config()).err().unwrap();
    assert!(err.to_string().contains("generation"), "{err}");
}

/// An elided record changes nothing in the chain only if its digest is the original's: a
/// storage that swaps a payload for another's digest, or elides in a version 1 segment, is
/// caught (B-8 across prunes).
#[test]
fn a_forged_elision_breaks_the_chain() {
    let storage = MemoryStorage::new();
    let commit = build(storage.clone());
    let (mut log, _) = Archive::open(storage.clone(), config()).unwrap();
    log.compact(0, |k, _| dead(index_of(k))).unwrap();
    drop(log);
    let name = generation_name(0, 1);
    let mut bytes = storage.get(&name).unwrap();
    // The first elided record: flip a digest byte and fix its CRC.
    let mut pos = SEGMENT_HEADER_LEN;
    loop {
        let (h, _) = format::decode_record(&bytes[pos..]).unwrap();
        if h.elided {
            break;
        }
        pos += h.framed_len();
    }
    bytes[pos + RECORD_HEADER_LEN + 10] ^= 1;
    let framed = RECORD_HEADER_LEN + ELIDED_PAYLOAD_LEN;
    let hb: [u8; RECORD_HEADER_LEN] = bytes[pos..pos + RECORD_HEADER_LEN].try_into().unwrap();
    let crc = format::record_crc(&hb, &bytes[pos + RECORD_HEADER_LEN..pos + framed]);
    bytes[pos + framed..pos + framed + 4].copy_from_slice(&crc.to_le_bytes());
    storage.put(&name, bytes);
    let (mut log, _) = Archive::open(storage.clone(), config()).unwrap();
    let report = log.verify(|_, _, _| Ok(())).unwrap();
    assert!(!report.chain_intact, "{report:?}");
    assert!(
        report
            .damaged
            .iter()
            .any(|d| d.segment == 0 && d.what.contains("chain")),
        "{report:?}"
    );
    let _ = commit;

    // An elided record in a version 1 segment: the scan refuses it.
    let storage = MemoryStorage::new();
    build(storage.clone());
    let name = generation_name(0, 0);
    let mut bytes = storage.get(&name).unwrap();
    let pos = SEGMENT_HEADER_LEN;
    let (h, p) = format::decode_record(&bytes[pos..]).unwrap();
    let stored = format::ElidedPayload::of(p).unwrap().encode();
    let hb = format::RecordHeader {
        len: ELIDED_PAYLOAD_LEN as u32,
        elided: true,
        ..h
    }
    .encode();
    let mut forged = Vec::new();
    forged.extend_from_slice(&hb);
    forged.extend_from_slice(&stored);
    forged.extend_from_slice(&format::record_crc(&hb, &stored).to_le_bytes());
    bytes.splice(pos..pos + h.framed_len(), forged);
    storage.put(&name, bytes);
    // The footer no longer matches (offsets moved), so open rescans, and the scan stops at the
    // elided record: nothing of the segment is readable, which open reports.
    let err = Archive::open(storage, config()).err().unwrap();
    assert!(
        matches!(err, ArchiveError::Corrupt { segment: 0, .. }),
        "{err}"
    );
}

/// Segments prepared together, from several threads, then finished one by one, end as
/// compacted as one at a time would leave them; preparing a segment twice is refused; a crash
/// between preparing and finishing leaves both generations, and the open keeps the newer.
#[test]
fn compactions_prepared_together_and_finished_in_turn() {
    let storage = MemoryStorage::new();
    let commit = build(storage.clone());
    let (mut log, _) = Archive::open(storage.clone(), config()).unwrap();
    let segments: Vec<u64> = (0..log.sealed_segments()).collect();
    let prepared: Vec<PreparedCompaction> = std::thread::scope(|scope| {
        let log = &log;
        let handles: Vec<_> = segments
            .iter()
            .map(|&s| scope.spawn(move || log.prepare_compaction(s, |k, _| dead(index_of(k)))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    assert!(prepared.iter().all(|p| p.compaction().elided > 0));
    // A second preparation of a segment already prepared is refused: its generation exists.
    assert!(matches!(
        log.prepare_compaction(0, |k, _| dead(index_of(k))),
        Err(ArchiveError::Io(e)) if e.kind() == std::io::ErrorKind::AlreadyExists
    ));
    for p in prepared {
        log.finish_compaction(p).unwrap();
    }
    drop(log);
    let (elided, _) = check(storage.clone(), commit, "prepared together");
    assert_eq!(elided, (0..RECORDS).filter(|&i| dead(i)).count() as u64);

    // Prepared and never finished (a crash between): the open keeps the newer generation.
    let storage = MemoryStorage::new();
    let commit = build(storage.clone());
    let (log, _) = Archive::open(storage.clone(), config()).unwrap();
    let unfinished = log.prepare_compaction(1, |k, _| dead(index_of(k))).unwrap();
    assert!(unfinished.compaction().elided > 0);
    drop(log);
    let (_, recovery) = check(storage, commit, "prepared, not finished");
    assert_eq!(recovery.removed_generations.len(), 1, "{recovery:?}");
}
