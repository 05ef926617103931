//! Archives in a real S3-compatible store with metadata in a real PostgreSQL, shared by several
//! instances: part fencing, lease hand-over, crash recovery. Needs the servers that
//! `scripts/services.sh` starts (`scripts/test.sh` runs these); ignored otherwise.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cairn_archive::{Archive, Config};
use cairn_seal::BlockId;
use cairn_server::testenv::{Fence, PartSegments};
use cairn_server::{Archives, Db, Engine, KIND_BLOCK};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

struct Shared {
    rt: tokio::runtime::Runtime,
    db: Db,
    store: Arc<dyn ObjectStore>,
}

fn shared() -> Shared {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let backends = rt
        .block_on(cairn_server::testenv::shared())
        .unwrap_or_else(|e| panic!("{e}"));
    let db = rt
        .block_on(Db::open(backends.database_url.as_deref().unwrap()))
        .unwrap();
    assert_eq!(db.engine(), Engine::Postgres);
    rt.block_on(db.add_tenant(&t(), 1 << 40)).unwrap();
    rt.block_on(db.add_user(&t(), &u(), cairn_token::Role::User))
        .unwrap();
    let store = backends.s3_store().unwrap().unwrap();
    Shared { rt, db, store }
}

fn block(i: u32) -> (BlockId, Vec<u8>) {
    let root = cairn_keys::ArchiveKey::from_bytes([3; 32]);
    let sealer = cairn_seal::Sealer::new(
        &root,
        cairn_seal::ArchiveId::from_bytes([1; 16]),
        cairn_seal::SealConfig::default(),
    );
    let plain: Vec<u8> = (0..70_000u32)
        .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i) >> 13) as u8)
        .collect();
    let b = sealer.seal(cairn_seal::BlockKind::DATA, &plain).unwrap();
    (b.id(), b.into_bytes())
}

fn parts(s: &Shared, prefix: &str, fence: Fence) -> PartSegments {
    PartSegments::open(
        Arc::clone(&s.store),
        ObjectPath::from(prefix),
        s.rt.handle().clone(),
        fence,
    )
    .unwrap()
}

/// Two writers that both believe they own one archive: the one that commits second collides
/// on the part number and acknowledges nothing; reopened, it sees the first one's record. A
/// writer whose fence fails (the lease moved) acknowledges nothing either.
#[test]
#[ignore = "needs PostgreSQL and S3 (scripts/test.sh)"]
fn parts_serialize_two_writers_and_obey_the_fence() {
    let s = shared();
    let ok: Fence = Arc::new(|| Ok(()));
    let config = || Config::new([9; 16]);
    let (mut first, _) = Archive::open(parts(&s, "w/a", Arc::clone(&ok)), config()).unwrap();
    let (mut second, _) = Archive::open(parts(&s, "w/a", Arc::clone(&ok)), config()).unwrap();
    first.append(1, &[1; 32], b"one").unwrap();
    first.commit().unwrap();
    second.append(1, &[2; 32], b"two").unwrap();
    assert!(
        second.commit().is_err(),
        "the second writer's commit must fail"
    );
    drop(second);
    let (mut reopened, _) = Archive::open(parts(&s, "w/a", Arc::clone(&ok)), config()).unwrap();
    assert!(reopened.locate(&[1; 32]).unwrap().is_some());
    assert!(reopened.locate(&[2; 32]).unwrap().is_none());
    reopened.append(1, &[2; 32], b"two").unwrap();
    reopened.commit().unwrap();

    let fenced = Arc::new(AtomicBool::new(false));
    let fence: Fence = {
        let fenced = Arc::clone(&fenced);
        Arc::new(move || {
            if fenced.load(Ordering::SeqCst) {
                Err(std::io::Error::other("lease moved"))
            } else {
                Ok(())
            }
        })
    };
    let (mut w, _) = Archive::open(parts(&s, "w/b", fence), config()).unwrap();
    w.append(1, &[3; 32], b"three").unwrap();
    w.commit().unwrap();
    fenced.store(true, Ordering::SeqCst);
    w.append(1, &[4; 32], b"four").unwrap();
    assert!(w.commit().is_err(), "a fenced writer must not acknowledge");
}

/// Two instances over one database and one bucket take turns on one archive (the lease passes
/// when a request ends); each sees what the other wrote, across segment seals; a restart of
/// both reads everything back.
#[test]
#[ignore = "needs PostgreSQL and S3 (scripts/test.sh)"]
fn two_instances_take_turns_on_one_archive() {
    let s = shared();
    let instance = || {
        s.rt.block_on(Archives::shared(
            s.db.clone(),
            Arc::clone(&s.store),
            s.rt.handle().clone(),
        ))
        .unwrap()
        .with_segment_target(cairn_archive::MIN_SEGMENT_TARGET)
    };
    let (a, b) = (instance(), instance());
    assert_ne!(a.holder(), b.holder());
    let blocks: Vec<(BlockId, Vec<u8>)> = (0..40).map(block).collect();
    for (i, chunk) in blocks.chunks(4).enumerate() {
        let refs: Vec<(BlockId, &[u8])> = chunk.iter().map(|(i, b)| (*i, &b[..])).collect();
        let through = if i % 2 == 0 { &a } else { &b };
        assert_eq!(
            through.put(&t(), &u(), KIND_BLOCK, &refs).unwrap().stored,
            4
        );
        // The other instance sees every block so far.
        let other = if i % 2 == 0 { &b } else { &a };
        let ids: Vec<BlockId> = blocks[..(i + 1) * 4].iter().map(|(i, _)| *i).collect();
        assert!(
            other.missing(&t(), &u(), &ids).unwrap().is_empty(),
            "turn {i}"
        );
    }
    drop((a, b));
    let c = instance();
    let ids: Vec<BlockId> = blocks.iter().map(|(i, _)| *i).collect();
    let got = c.get(&t(), &u(), KIND_BLOCK, &ids).unwrap();
    for ((_, want), got) in blocks.iter().zip(&got) {
        assert_eq!(want, got);
    }
    // Sealed segments are objects of their own, and no parts are left of them.
    let listed: Vec<object_store::ObjectMeta> =
        s.rt.block_on(async {
            use futures_util::TryStreamExt;
            s.store
                .list(Some(&ObjectPath::from("tenants/t/users/u")))
                .try_collect()
                .await
        })
        .unwrap();
    let sealed = listed
        .iter()
        .filter(|m| !m.location.as_ref().contains("/active/"))
        .count();
    assert!(sealed >= 2, "{listed:?}");
    // The quota charged is what the archive holds.
    let used = s.rt.block_on(s.db.quota(&t())).unwrap().unwrap().used_bytes;
    let held: usize = blocks.iter().map(|(_, b)| b.len()).sum();
    assert_eq!(used, i64::try_from(held).unwrap());
}

/// A request that finds the archive leased to another instance waits for the lease to be
/// given back and goes on as soon as it is (PostgreSQL's notification), not at the lease's
/// expiry: it finishes before the other holder's lease would have run out.
#[test]
#[ignore = "needs PostgreSQL and S3 (scripts/test.sh)"]
fn a_waiting_instance_takes_the_lease_when_it_is_given_back() {
    let s = shared();
    let b =
        s.rt.block_on(Archives::shared(
            s.db.clone(),
            Arc::clone(&s.store),
            s.rt.handle().clone(),
        ))
        .unwrap();
    // Another instance holds the lease for the next ten seconds.
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let taken_at = now();
    let expires = taken_at + cairn_server::LEASE_TTL_MS;
    let epoch =
        s.rt.block_on(s.db.take_lease(&t(), &u(), "another-instance", taken_at, expires))
            .unwrap()
            .unwrap();
    let (id, bytes) = block(99);
    std::thread::scope(|scope| {
        let put = scope.spawn(|| {
            let stored = b
                .put(&t(), &u(), KIND_BLOCK, &[(id, &bytes[..])])
                .unwrap()
                .stored;
            (stored, now())
        });
        let started = std::time::Instant::now();
        while b.waiting_for_lease() == 0 {
            assert!(!put.is_finished(), "the put did not wait for the lease");
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "never waited"
            );
            std::thread::yield_now();
        }
        s.rt.block_on(s.db.release_lease(&t(), &u(), "another-instance", epoch))
            .unwrap();
        let (stored, done_at) = put.join().unwrap();
        assert_eq!(stored, 1);
        assert!(
            done_at < expires,
            "the put went on at the lease's expiry ({done_at} ms, expiry {expires} ms), not at its release"
        );
    });
    assert_eq!(b.waiting_for_lease(), 0);
}

/// Parts of a segment already sealed (`seg-X.active` beside `seg-X`): what a crash between the
/// sealed put and the parts' removal leaves, and what a fenced-off writer's late part looks like
/// (any number). A new instance opens the archive, reads every block, and removes them.
#[test]
#[ignore = "needs PostgreSQL and S3 (scripts/test.sh)"]
fn parts_of_a_sealed_segment_are_ignored_and_removed() {
    let s = shared();
    let instance = || {
        s.rt.block_on(Archives::shared(
            s.db.clone(),
            Arc::clone(&s.store),
            s.rt.handle().clone(),
        ))
        .unwrap()
        .with_segment_target(cairn_archive::MIN_SEGMENT_TARGET)
    };
    let blocks: Vec<(BlockId, Vec<u8>)> = (0..24).map(block).collect();
    let a = instance();
    for chunk in blocks.chunks(4) {
        let refs: Vec<(BlockId, &[u8])> = chunk.iter().map(|(i, b)| (*i, &b[..])).collect();
        a.put(&t(), &u(), KIND_BLOCK, &refs).unwrap();
    }
    drop(a);
    let base = ObjectPath::from("tenants/t/users/u");
    let sealed = base.clone().join(cairn_archive::segment_name(0, false));
    let bytes =
        s.rt.block_on(async { s.store.get(&sealed).await.unwrap().bytes().await })
            .unwrap();
    let parts = base
        .clone()
        .join("active")
        .join(cairn_archive::segment_name(0, true));
    for (n, body) in [
        ("0000000000", bytes.clone()),
        ("0000000099", bytes::Bytes::from_static(b"late")),
    ] {
        s.rt.block_on(s.store.put(&parts.clone().join(n), body.into()))
            .unwrap();
    }
    let b = instance();
    let ids: Vec<BlockId> = blocks.iter().map(|(i, _)| *i).collect();
    let got = b.get(&t(), &u(), KIND_BLOCK, &ids).unwrap();
    for ((_, want), got) in blocks.iter().zip(&got) {
        assert_eq!(want, got);
    }
    let left: Vec<object_store::ObjectMeta> =
        s.rt.block_on(async {
            use futures_util::TryStreamExt;
            s.store.list(Some(&parts)).try_collect().await
        })
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// Parts, with every call passed through except the seal, which fails: a crash after the
/// commit that filled a segment (its footer is in the last part) and before the seal.
struct CrashBeforeSeal(PartSegments);

impl cairn_archive::Storage for CrashBeforeSeal {
    type Writer = cairn_server::testenv::PartWriter;
    fn create(&self, name: &str) -> std::io::Result<Self::Writer> {
        self.0.create(name)
    }
    fn append(&self, name: &str) -> std::io::Result<Self::Writer> {
        self.0.append(name)
    }
    fn len(&self, name: &str) -> std::io::Result<u64> {
        self.0.len(name)
    }
    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.0.read_at(name, offset, buf)
    }
    fn truncate(&self, name: &str, len: u64) -> std::io::Result<()> {
        self.0.truncate(name, len)
    }
    fn seal(&self, _: &str, _: &str) -> std::io::Result<()> {
        Err(std::io::Error::other("crashed before the seal"))
    }
    fn remove(&self, name: &str) -> std::io::Result<()> {
        self.0.remove(name)
    }
    fn list(&self) -> std::io::Result<Vec<String>> {
        self.0.list()
    }
}

/// A crash between the commit that filled a segment and its seal leaves the footer inside the
/// last part. Recovery cuts it (a cut marker: parts are immutable), every committed record is
/// there, and the archive takes new commits and seals again.
#[test]
#[ignore = "needs PostgreSQL and S3 (scripts/test.sh)"]
fn a_crash_before_the_seal_is_recovered() {
    use cairn_archive::Storage as _;
    let s = shared();
    let ok: Fence = Arc::new(|| Ok(()));
    let config = || Config::new([9; 16]).with_segment_target(256 << 10).unwrap();
    let (mut log, _) =
        Archive::open(CrashBeforeSeal(parts(&s, "w/c", Arc::clone(&ok))), config()).unwrap();
    let payload = vec![7u8; 60_000];
    let mut committed = Vec::new();
    let mut i = 0u8;
    loop {
        log.append(1, &[i; 32], &payload).unwrap();
        match log.commit() {
            Ok(_) => committed.push(i),
            Err(_) => break,
        }
        i += 1;
        assert!(i < 200, "the segment never filled");
    }
    assert!(committed.len() >= 2, "{committed:?}");
    drop(log);
    let (mut log, recovery) = Archive::open(parts(&s, "w/c", Arc::clone(&ok)), config()).unwrap();
    assert!(recovery.truncated_bytes > 0, "{recovery:?}");
    for k in &committed {
        let loc = log.locate(&[*k; 32]).unwrap().expect("a committed record");
        assert_eq!(log.read_committed(&loc).unwrap(), payload);
    }
    // New commits go on, through the next seal.
    for j in 0..40u8 {
        log.append(1, &[200 + j % 50; 32], &payload).unwrap();
        log.commit().unwrap();
    }
    drop(log);
    let (log, _) = Archive::open(parts(&s, "w/c", ok), config()).unwrap();
    for k in &committed {
        assert!(log.locate(&[*k; 32]).unwrap().is_some());
    }
    let listed = parts(&s, "w/c", Arc::new(|| Ok(()))).list().unwrap();
    assert!(listed.len() >= 2, "{listed:?}");
}

/// The tenant every test here uses.
fn t() -> cairn_token::TenantId {
    cairn_token::TenantId::new("t").unwrap()
}

/// Its user.
fn u() -> cairn_token::UserId {
    cairn_token::UserId::new("u").unwrap()
}

/// A compacted generation in the shared store (cairn-archive's `compact` over the S3 parts
/// storage): published with one create-only put, the old generation deleted, and a later open
/// by another handle reads the new one (live records whole, elided ones `Elided`, the chain
/// head unchanged, verify clean).
#[test]
#[ignore = "needs PostgreSQL and S3 (scripts/test.sh)"]
fn a_compacted_generation_replaces_the_old_one_in_the_shared_store() {
    let s = shared();
    let ok: Fence = Arc::new(|| Ok(()));
    let config = || {
        Config::new([9; 16])
            .with_segment_target(cairn_archive::MIN_SEGMENT_TARGET)
            .unwrap()
    };
    let (mut log, _) = Archive::open(parts(&s, "w/g", Arc::clone(&ok)), config()).unwrap();
    for i in 0..8u8 {
        log.append(1, &[i; 32], &vec![i; 3000]).unwrap();
        log.commit().unwrap();
    }
    let head = log.last_commit();
    assert!(log.sealed_segments() >= 2);
    let done = log.compact(0, |k, _| k[0] % 2 == 0).unwrap();
    assert_eq!(done.generation, 1);
    assert!(done.elided > 0 && done.bytes_after < done.bytes_before);
    drop(log);
    use futures_util::TryStreamExt;
    let names: Vec<String> =
        s.rt.block_on(
            s.store
                .list(Some(&ObjectPath::from("w/g")))
                .map_ok(|m| m.location.filename().unwrap_or_default().to_owned())
                .try_collect(),
        )
        .unwrap();
    assert!(
        names.contains(&cairn_archive::generation_name(0, 1)),
        "{names:?}"
    );
    assert!(
        !names.contains(&cairn_archive::generation_name(0, 0)),
        "{names:?}"
    );
    let (mut log, recovery) = Archive::open(parts(&s, "w/g", ok), config()).unwrap();
    assert!(recovery.removed_generations.is_empty());
    assert_eq!(log.last_commit(), head);
    let mut elided = 0;
    for i in 0..8u8 {
        match log.get(&[i; 32]) {
            Ok(p) => assert_eq!(p.unwrap(), vec![i; 3000]),
            Err(cairn_archive::ArchiveError::Elided { .. }) => elided += 1,
            Err(e) => panic!("{i}: {e}"),
        }
    }
    assert_eq!(elided, done.elided);
    let report = log.verify(|_, _, _| Ok(())).unwrap();
    assert!(
        report.is_clean() && report.records_elided == done.elided,
        "{report:?}"
    );
}
