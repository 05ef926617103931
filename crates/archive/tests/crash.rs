//! B-9: crash-point enumeration through the fault-injecting storage, and B-10: the durability
//! protocol read off the recorded operations. Also the local-directory storage end to end.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::collections::BTreeMap;

use cairn_archive::faulty::{Fault, FaultyStorage, Op};
use cairn_archive::*;

const ID: [u8; 16] = *b"crash test arch!";
const TARGET: u64 = 12 << 10;

fn config() -> Config {
    Config::new(ID).with_segment_target(TARGET).unwrap()
}

fn key(i: u64) -> Key {
    *blake3::hash(&i.to_le_bytes()).as_bytes()
}

fn payload(i: u64) -> Vec<u8> {
    // 50 "files" of 0..3 KiB, and two large ones that take the direct-write path.
    let len = match i {
        17 | 33 => 300 << 10,
        _ => ((i * 977) % 3000) as usize,
    };
    (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
}

/// The workload: 50 records, a commit every 5. Returns the records acknowledged (their commit
/// returned Ok) and the batch in flight when it stopped, if any.
fn workload<S: Storage>(storage: S) -> (Vec<u64>, Vec<u64>) {
    let mut acked = Vec::new();
    let mut in_flight = Vec::new();
    let Ok((mut log, _)) = Archive::open(storage, config()) else {
        return (acked, in_flight);
    };
    for i in 0..50u64 {
        in_flight.push(i);
        if log.append(1, &key(i), &payload(i)).is_err() {
            return (acked, in_flight);
        }
        if (i + 1) % 5 == 0 {
            if log.commit().is_err() {
                return (acked, in_flight);
            }
            acked.append(&mut in_flight);
        }
    }
    (acked, in_flight)
}

fn check_recovered(storage: MemoryStorage, acked: &[u64], in_flight: &[u64], what: &str) {
    let (mut log, _) =
        Archive::open(storage.clone(), config()).unwrap_or_else(|e| panic!("{what}: open: {e}"));
    for &i in acked {
        assert_eq!(
            log.get(&key(i)).unwrap().as_deref(),
            Some(&payload(i)[..]),
            "{what}: acked record {i}"
        );
    }
    // Nothing outside the acknowledged records and the batch in flight is visible, and the
    // batch in flight is all or nothing.
    let visible: Vec<u64> = in_flight
        .iter()
        .copied()
        .filter(|&i| log.get(&key(i)).unwrap().is_some())
        .collect();
    assert!(
        visible.is_empty() || visible == in_flight,
        "{what}: partial batch {visible:?} of {in_flight:?}"
    );
    for i in 50..60 {
        assert!(log.get(&key(i)).unwrap().is_none());
    }
    let report = log.verify(|_, _, _| Ok(())).unwrap();
    assert!(report.is_clean(), "{what}: {report:?}");
    // The next "backup" completes, and everything is there after another reopen.
    log.append(1, &key(1000), b"next backup").unwrap();
    log.commit().unwrap();
    drop(log);
    let (mut log, recovery) = Archive::open(storage, config()).unwrap();
    assert_eq!(recovery.truncated_bytes, 0, "{what}");
    assert_eq!(log.get(&key(1000)).unwrap().unwrap(), b"next backup");
    for &i in acked {
        assert!(log.get(&key(i)).unwrap().is_some());
    }
}

#[test]
fn b9_every_fault_at_every_operation() {
    let clean = FaultyStorage::new();
    let (acked, _) = workload(clean.clone());
    assert_eq!(acked.len(), 50);
    let total = clean.ops();
    assert!(total > 30, "{total} operations");
    let mut runs = 0;
    for at in 1..=total {
        for fault in [
            Fault::Crash,
            Fault::PowerLoss,
            Fault::TornWrite,
            Fault::NoSpace,
            Fault::Io,
        ] {
            for seed in [1u64, 0xdead_beef] {
                if seed != 1 && fault != Fault::TornWrite {
                    continue;
                }
                let storage = FaultyStorage::with_fault(at, fault, seed);
                let (acked, in_flight) = workload(storage.clone());
                assert_eq!(storage.fired(), Some(fault), "op {at} of {total}");
                check_recovered(
                    storage.surviving(),
                    &acked,
                    &in_flight,
                    &format!("{fault:?} at op {at}"),
                );
                runs += 1;
            }
        }
    }
    assert!(runs >= 5 * total as usize);
}

/// B-10: for every segment, the recorded operations follow the protocol: create (durable entry)
/// → writes → sync → … → footer writes → sync → seal; and every commit's acknowledgement
/// follows a sync that came after its last write.
#[test]
fn b10_durability_protocol() {
    let storage = FaultyStorage::new();
    let (acked, _) = workload(storage.clone());
    assert_eq!(acked.len(), 50);
    let log = storage.log();
    let mut per_file: BTreeMap<String, Vec<&Op>> = BTreeMap::new();
    for op in &log {
        let name = match op {
            Op::Create(n) | Op::Write(n, _) | Op::Sync(n) | Op::Truncate(n, _) | Op::Remove(n) => n,
            Op::Seal(from, _) => from,
        };
        per_file.entry(name.clone()).or_default().push(op);
    }
    let mut sealed = 0;
    let mut untouched = 0;
    for (name, ops) in &per_file {
        assert!(
            matches!(ops[0], Op::Create(n) if n == name),
            "{name}: starts with create"
        );
        assert!(
            name.ends_with(".active"),
            "{name}: only active files are written"
        );
        if ops.len() == 1 {
            // The segment created by the last seal: nothing committed to it yet.
            untouched += 1;
            continue;
        }
        // Never a seal without a sync right before it; never a write after the seal.
        for (i, op) in ops.iter().enumerate() {
            if let Op::Seal(_, to) = op {
                assert!(
                    matches!(ops[i - 1], Op::Sync(_)),
                    "{name}: seal without a sync first"
                );
                assert_eq!(i, ops.len() - 1, "{name}: operations after seal");
                assert_eq!(to, &name.trim_end_matches(".active").to_owned());
                sealed += 1;
            }
        }
        // The header goes out with the first batch, which ends with a sync.
        assert!(matches!(ops[1], Op::Write(..)), "{name}: {ops:?}");
        assert!(
            ops.iter().any(|op| matches!(op, Op::Sync(_))),
            "{name}: never synced"
        );
    }
    assert!(sealed >= 3, "{sealed} segments sealed");
    assert!(untouched <= 1);
    // Each successful commit ended with a sync: replay the workload with a fault-free storage
    // and stop it just after each commit's sync; the batch must be durable at that point.
    let clean = FaultyStorage::new();
    let (mut archive, _) = Archive::open(clean.clone(), config()).unwrap();
    for i in 0..10u64 {
        archive.append(1, &key(i), &payload(i)).unwrap();
        if (i + 1) % 5 == 0 {
            archive.commit().unwrap();
            let last_sync = clean
                .log()
                .iter()
                .rposition(|op| matches!(op, Op::Sync(_)))
                .unwrap();
            let last_write = clean
                .log()
                .iter()
                .rposition(|op| matches!(op, Op::Write(..)))
                .unwrap();
            assert!(
                last_sync > last_write,
                "commit returned before its data was synced"
            );
        }
    }
}

#[test]
fn directory_storage_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let storage = DirStorage::open(dir.path().join("archive")).unwrap();
    let (mut log, _) = Archive::open(storage.clone(), config()).unwrap();
    for i in 0..40u64 {
        log.append(1, &key(i), &payload(i)).unwrap();
        if i % 7 == 6 {
            log.commit().unwrap();
        }
    }
    // Uncommitted records at the end are dropped on reopen; committed ones stay.
    let committed = log.commit().unwrap();
    log.append(1, &key(999), b"not committed").unwrap();
    drop(log);
    let (mut log, recovery) = Archive::open(
        DirStorage::open(dir.path().join("archive")).unwrap(),
        config(),
    )
    .unwrap();
    assert_eq!(log.last_commit(), committed);
    assert!(recovery.dropped_records <= 1);
    for i in 0..40u64 {
        assert_eq!(log.get(&key(i)).unwrap().unwrap(), payload(i));
    }
    assert!(log.get(&key(999)).unwrap().is_none());
    assert!(log.verify(|_, _, _| Ok(())).unwrap().is_clean());
    assert!(log.sealed_segments() >= 2);
    // Names that could leave the directory are refused.
    assert!(storage.create("../escape").is_err());
    assert!(storage.create(".hidden").is_err());
}
