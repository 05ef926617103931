//! Prune over one archive, through the storage service (`docs/design/0009-retention-and-prune.md`
//! §4–§6): snapshots arrive with reference lists, prune forgets, marks, waits out the grace
//! period and compacts; nothing a kept snapshot reaches is ever lost, and a backup in flight
//! across a mark keeps what it uses.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap
)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use cairn_keys::ArchiveKey;
use cairn_seal::{ArchiveId, BlockId, BlockKind, SealConfig, Sealer};
use cairn_server::wire::refs::RefList;
use cairn_server::{
    Archives, Db, Forgetting, KIND_BLOCK, KIND_SNAPSHOT, PruneOptions, RefsRefusal, StoreError,
};
use cairn_token::{TenantId, UserId};
use object_store::local::LocalFileSystem;

const GRACE: i64 = 3600;
const T0: i64 = 1_800_000_000;

fn t() -> TenantId {
    TenantId::new("acme").unwrap()
}

fn u() -> UserId {
    UserId::new("ana").unwrap()
}

fn sealer() -> Sealer {
    Sealer::new(
        &ArchiveKey::from_bytes([5; 32]),
        ArchiveId::from_bytes([5; 16]),
        SealConfig::default(),
    )
}

/// A sealed block of 1.5 KiB of pseudo-random plaintext from `seed` (incompressible, so
/// segments of the 4 KiB minimum target seal every few blocks).
fn block(s: &Sealer, seed: u64) -> (BlockId, Vec<u8>) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let plain: Vec<u8> = (0..1536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let b = s.seal(BlockKind::DATA, &plain).unwrap();
    (b.id(), b.into_bytes())
}

struct Repo {
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    db: Db,
    archives: Archives,
    sealer: Sealer,
}

impl Repo {
    fn new() -> Self {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = rt
            .block_on(Db::open_sqlite(&dir.path().join("m.sqlite")))
            .unwrap();
        rt.block_on(db.add_tenant(&t(), 1 << 30)).unwrap();
        rt.block_on(db.add_user(&t(), &u(), cairn_token::Role::User))
            .unwrap();
        std::fs::create_dir_all(dir.path().join("segments")).unwrap();
        let archives = Self::open(&rt, &dir, &db);
        Self {
            rt,
            dir,
            db,
            archives,
            sealer: sealer(),
        }
    }

    fn open(rt: &tokio::runtime::Runtime, dir: &tempfile::TempDir, db: &Db) -> Archives {
        Archives::new_local(
            db.clone(),
            dir.path().join("staging"),
            Arc::new(
                LocalFileSystem::new_with_prefix(dir.path().join("segments"))
                    .unwrap()
                    .with_fsync(true),
            ),
            rt.handle().clone(),
        )
        .with_segment_target(cairn_archive::MIN_SEGMENT_TARGET)
    }

    /// Drops the service and opens it again over the same files (a restart).
    fn restart(&mut self) {
        self.archives = Self::open(&self.rt, &self.dir, &self.db);
    }

    fn upload(&self, blocks: &[(BlockId, Vec<u8>)]) {
        let records: Vec<(BlockId, &[u8])> = blocks.iter().map(|(i, b)| (*i, &b[..])).collect();
        self.archives.put(&t(), &u(), KIND_BLOCK, &records).unwrap();
    }

    fn snapshot(&self, n: u64, refs: &RefList) -> Result<BlockId, StoreError> {
        let b = self
            .sealer
            .seal(BlockKind::SNAPSHOT, format!("snapshot {n}").as_bytes())
            .unwrap();
        let id = b.id();
        self.archives
            .put_snapshot(&t(), &u(), &id, b.as_bytes(), Some(refs))
            .map(|_| id)
    }

    fn read(&self, id: &BlockId) -> Result<Vec<u8>, StoreError> {
        self.archives
            .get(&t(), &u(), KIND_BLOCK, &[*id])
            .map(|mut v| v.remove(0))
    }
}

/// Ten versions of a changing tree: 6 blocks every version shares, 3 of its own. Returns each
/// version's snapshot id and full list, and every block's bytes.
/// Each version's snapshot id and full list.
type Versions = Vec<(BlockId, Vec<BlockId>)>;

fn ten_versions(r: &Repo) -> (Versions, Vec<(BlockId, Vec<u8>)>) {
    let shared: Vec<_> = (0..6).map(|i| block(&r.sealer, 1000 + i)).collect();
    r.upload(&shared);
    let mut all = shared.clone();
    let mut versions: Versions = Vec::new();
    for v in 0..10u64 {
        let own: Vec<_> = (0..3).map(|i| block(&r.sealer, v * 10 + i)).collect();
        r.upload(&own);
        all.extend(own.iter().cloned());
        let mut full: Vec<BlockId> = shared.iter().chain(&own).map(|(i, _)| *i).collect();
        full.sort_unstable();
        let list = match versions.last() {
            Some((base, old)) => RefList::delta(*base, old, &full),
            None => RefList::complete(full.clone()),
        };
        let id = r.snapshot(v, &list).unwrap();
        versions.push((id, full));
    }
    (versions, all)
}

fn forgetting(versions: &[(BlockId, Vec<BlockId>)], upto: usize, sweep: bool) -> Forgetting {
    let ids: Vec<BlockId> = versions[..upto].iter().map(|(i, _)| *i).collect();
    Forgetting {
        now: ids.clone(),
        forgotten: ids.iter().copied().collect(),
        sweepable: if sweep {
            ids.into_iter().collect()
        } else {
            HashSet::new()
        },
    }
}

fn options() -> PruneOptions {
    PruneOptions {
        grace_secs: GRACE,
        live_threshold_pct: 100,
        ..PruneOptions::default()
    }
}

#[test]
fn prune_collects_only_what_no_kept_snapshot_reaches_after_the_grace_period() {
    let mut r = Repo::new();
    let (versions, all) = ten_versions(&r);
    let kept: HashSet<BlockId> = versions[7..].iter().flat_map(|(_, l)| l.clone()).collect();
    let dead: Vec<BlockId> = all
        .iter()
        .map(|(i, _)| *i)
        .filter(|i| !kept.contains(i))
        .collect();
    assert_eq!(dead.len(), 21, "7 forgotten versions' own blocks");

    // Phase one: forget 7 of 10, mark their own blocks; nothing is deleted yet.
    let first = r
        .archives
        .prune(&t(), &u(), &forgetting(&versions, 7, false), T0, options())
        .unwrap();
    assert_eq!(
        (first.forgotten, first.kept, first.unlisted),
        (7, 3, 0),
        "{first:?}"
    );
    assert_eq!((first.marked, first.dead, first.records_elided), (21, 0, 0));
    assert_eq!(first.live_blocks, kept.len());
    for id in &dead {
        assert!(r.read(id).is_ok(), "not deleted within the grace period");
    }
    // Uploaders are told marked blocks are missing, so that they do not lean on them.
    let asked: Vec<BlockId> = all.iter().map(|(i, _)| *i).collect();
    let missing: HashSet<BlockId> = r
        .archives
        .missing(&t(), &u(), &asked)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(missing, dead.iter().copied().collect());

    // Phase two, before the grace period is over: still nothing.
    let early = r
        .archives
        .prune(
            &t(),
            &u(),
            &forgetting(&versions, 7, false),
            T0 + GRACE - 1,
            options(),
        )
        .unwrap();
    assert_eq!((early.dead, early.records_elided), (0, 0), "{early:?}");

    // After it: the dead blocks (and the forgotten snapshot records) are elided.
    let swept = r
        .archives
        .prune(
            &t(),
            &u(),
            &forgetting(&versions, 7, true),
            T0 + GRACE,
            options(),
        )
        .unwrap();
    assert_eq!(swept.dead, 21, "{swept:?}");
    assert!(swept.segments_compacted > 0);
    assert_eq!(swept.records_elided, 21 + 7, "{swept:?}");
    assert!(swept.bytes_after < swept.bytes_before, "{swept:?}");
    for (id, bytes) in &all {
        if kept.contains(id) {
            assert_eq!(&r.read(id).unwrap(), bytes, "a kept block reads back");
        } else {
            assert!(matches!(r.read(id), Err(StoreError::NotFound)));
        }
    }
    // The same after a restart (the newest generations are the segments), and the marks of
    // elided blocks are gone.
    r.restart();
    for (id, bytes) in all.iter().filter(|(i, _)| kept.contains(i)) {
        assert_eq!(&r.read(id).unwrap(), bytes);
    }
    assert!(
        r.rt.block_on(r.db.prune_marks(&t(), &u()))
            .unwrap()
            .is_empty()
    );
    let listed: HashSet<BlockId> = r
        .archives
        .snapshots(&t(), &u())
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(listed, versions[7..].iter().map(|(i, _)| *i).collect());
    // A prune with nothing new to do does nothing.
    let again = r
        .archives
        .prune(
            &t(),
            &u(),
            &forgetting(&versions, 7, true),
            T0 + 2 * GRACE,
            options(),
        )
        .unwrap();
    assert_eq!((again.marked, again.dead, again.records_elided), (0, 0, 0));
    // A new backup that names a pruned block is refused with the ids, and succeeds once the
    // block is uploaded again.
    let (last, last_full) = versions.last().unwrap();
    let revived = dead[0];
    let mut full = last_full.clone();
    full.push(revived);
    full.sort_unstable();
    let list = RefList::delta(*last, last_full, &full);
    match r.snapshot(100, &list) {
        Err(StoreError::Refs(RefsRefusal::Pruned(ids))) => assert_eq!(ids, [revived]),
        other => panic!("{other:?}"),
    }
    let again_bytes = all.iter().find(|(i, _)| *i == revived).unwrap().1.clone();
    r.upload(&[(revived, again_bytes.clone())]);
    r.snapshot(100, &list).unwrap();
    assert_eq!(r.read(&revived).unwrap(), again_bytes);
}

/// A backup that asked which blocks were missing before the mark, and commits after it: its
/// snapshot makes the marked block live again, and the sweep leaves it alone; a block uploaded
/// again (new bytes under the same id) after the mark is live in its new copy.
#[test]
fn a_backup_in_flight_across_the_mark_keeps_what_it_uses() {
    let r = Repo::new();
    let (versions, _) = ten_versions(&r);
    r.archives
        .prune(&t(), &u(), &forgetting(&versions, 9, false), T0, options())
        .unwrap();
    let (last, last_full) = versions.last().unwrap();
    // Version 0's own blocks (seeds 0, 1, 2) are marked; the backup in flight uses two of
    // them: one it relies on as stored (it asked before the mark), one it uploads again (it
    // asked after): the same plaintext sealed again, so the same id with other bytes.
    let relied = block(&r.sealer, 1).0;
    let resealed = block(&r.sealer, 0);
    let uploaded = resealed.0;
    let marks = r.rt.block_on(r.db.prune_marks(&t(), &u())).unwrap();
    for id in [relied, uploaded] {
        assert!(marks.contains_key(&hex::encode(id.as_bytes())), "marked");
    }
    let before = r.read(&uploaded).unwrap();
    assert_ne!(before, resealed.1, "a new nonce");
    r.upload(std::slice::from_ref(&resealed));
    let mut full = last_full.clone();
    full.extend([relied, uploaded]);
    full.sort_unstable();
    let list = RefList::delta(*last, last_full, &full);
    let newest = r.snapshot(10, &list).unwrap();
    let marks = r.rt.block_on(r.db.prune_marks(&t(), &u())).unwrap();
    for id in [relied, uploaded] {
        assert!(!marks.contains_key(&hex::encode(id.as_bytes())), "cleared");
    }
    let swept = r
        .archives
        .prune(
            &t(),
            &u(),
            &forgetting(&versions, 9, true),
            T0 + GRACE,
            options(),
        )
        .unwrap();
    assert!(swept.records_elided > 0, "{swept:?}");
    assert!(r.read(&relied).is_ok());
    assert_eq!(
        r.read(&uploaded).unwrap(),
        resealed.1,
        "the new copy is the block"
    );
    let listed = r.archives.snapshots(&t(), &u()).unwrap();
    assert!(listed.contains(&newest));
}

/// Lists are checked on arrival: a delta from a base with no list, a list that does not apply
/// to its base, and a list naming blocks that are not stored are refused, and nothing is
/// stored; while a kept snapshot has no list, prune marks nothing.
#[test]
fn lists_are_checked_on_arrival_and_an_unlisted_snapshot_stops_collection() {
    let r = Repo::new();
    let (versions, _) = ten_versions(&r);
    let (last, last_full) = versions.last().unwrap();
    let unknown = RefList::delta(BlockId::from_bytes([7; 32]), &[], &[]);
    assert!(matches!(
        r.snapshot(20, &unknown),
        Err(StoreError::Refs(RefsRefusal::Base))
    ));
    let not_applying = RefList {
        base: Some(*last),
        added: vec![],
        removed: vec![BlockId::from_bytes([8; 32])],
    };
    assert!(matches!(
        r.snapshot(21, &not_applying),
        Err(StoreError::Refs(RefsRefusal::Base))
    ));
    let absent = BlockId::from_bytes([9; 32]);
    let mut full = last_full.clone();
    full.push(absent);
    full.sort_unstable();
    match r.snapshot(22, &RefList::delta(*last, last_full, &full)) {
        Err(StoreError::Refs(RefsRefusal::Missing(ids))) => assert_eq!(ids, [absent]),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.archives.snapshots(&t(), &u()).unwrap().len(), 10);

    // A snapshot stored without a list (an agent of the version 1 upload).
    let b = r.sealer.seal(BlockKind::SNAPSHOT, b"unlisted").unwrap();
    r.archives
        .put(&t(), &u(), KIND_SNAPSHOT, &[(b.id(), b.as_bytes())])
        .unwrap();
    let report = r
        .archives
        .prune(&t(), &u(), &forgetting(&versions, 9, true), T0, options())
        .unwrap();
    assert_eq!(
        (report.unlisted, report.marked, report.records_elided),
        (1, 0, 0)
    );
}

/// Through the API: snapshots with lists arrive over HTTPS (version 2 bodies), only an admin
/// may prune (never the device that backs up, nor the user), prune forgets what the user's
/// policy no longer keeps, the listing leaves it out, marked blocks are reported missing, a
/// list from an unknown base is `409`, and the prune is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_prunes_and_the_api_follows_what_prune_did() {
    use cairn_server::RetentionPolicy;
    use cairn_server::wire;
    use cairn_token::{Capability, ManualClock, Role, Timestamp};
    use common::{seed, start_app};

    let app = start_app().await;
    seed(&app, "acme", 1 << 30, &["ana"]).await;
    let (device, device_token, _) = common::enroll(&app, "acme", "ana").await;
    let base = "/v1/tenants/acme/users/ana";
    let s = sealer();
    let blocks: Vec<(BlockId, Vec<u8>)> = (0..3).map(|i| block(&s, 50 + i)).collect();
    let bodies: Vec<&[u8]> = blocks.iter().map(|(_, b)| &b[..]).collect();
    let r = app
        .call(
            "POST",
            &format!("{base}/blocks"),
            Some(&device_token),
            Some(wire::encode_batch(&bodies)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let put_snapshot = |n: u64, list: RefList| {
        let sealed = s
            .seal(BlockKind::SNAPSHOT, format!("snapshot {n}").as_bytes())
            .unwrap();
        let id = sealed.id();
        let req = app
            .http
            .put(app.url(&format!("{base}/snapshots/{id}")))
            .bearer_auth(&device_token)
            .header("content-type", wire::SNAPSHOT_MEDIA_TYPE)
            .body(wire::encode_snapshot(sealed.as_bytes(), &list));
        async move {
            let resp = req.send().await.unwrap();
            (id, resp.status().as_u16())
        }
    };
    let ids: Vec<BlockId> = blocks.iter().map(|(i, _)| *i).collect();
    let sorted = |mut v: Vec<BlockId>| {
        v.sort_unstable();
        v
    };
    let full = [
        sorted(vec![ids[0], ids[1]]),
        sorted(vec![ids[1], ids[2]]),
        vec![ids[2]],
    ];
    // Arrival times: the first two a month ago (recorded before the upload; the row keeps
    // its first time), the last one now.
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix(0).unwrap()));
    let db = app.services.db.clone().with_clock(clock.clone());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut snaps = Vec::new();
    for (n, list) in full.iter().enumerate() {
        let refs = match snaps.last() {
            Some(prev) => RefList::delta(*prev, &full[n - 1], list),
            None => RefList::complete(list.clone()),
        };
        let (id, status) = put_snapshot(n as u64, refs).await;
        assert_eq!(status, 200);
        snaps.push(id);
    }
    // Rewrite the first two rows' arrival as a month ago (the table keeps its first time, so
    // the rows are made again under the moved clock).
    sqlx::query("DELETE FROM snapshots WHERE id = $1 OR id = $2")
        .bind(hex::encode(snaps[0].as_bytes()))
        .bind(hex::encode(snaps[1].as_bytes()))
        .execute(app.services.db.pool())
        .await
        .unwrap();
    clock.set(Timestamp::from_unix(now - 30 * 86_400).unwrap());
    let laptop: cairn_token::DeviceId = device.parse().unwrap();
    for id in &snaps[..2] {
        db.record_snapshot(&t(), &u(), &hex::encode(id.as_bytes()), Some(&laptop), 100)
            .await
            .unwrap();
    }
    let keep_last = RetentionPolicy {
        keep_last: 1,
        keep_hourly: 0,
        keep_daily: 0,
        keep_weekly: 0,
        keep_monthly: 0,
        keep_yearly: 0,
        keep_within_days: 0,
    };
    app.services
        .db
        .set_retention_floor(&keep_last)
        .await
        .unwrap();
    app.services
        .db
        .set_retention(&t(), Some(&u()), &(keep_last, None))
        .await
        .unwrap();

    let prune = format!("{base}/prune");
    let user_token = app.token("acme", "ana", None, Role::User, &[Capability::BackupList]);
    for token in [&device_token, &user_token] {
        let r = app.call("POST", &prune, Some(token), None).await;
        assert_eq!(r.status, 403, "{}", r.text());
    }
    let listed = |token: String| {
        let app = &app;
        async move {
            let r = app
                .call("GET", &format!("{base}/snapshots"), Some(&token), None)
                .await;
            wire::decode_ids(&r.body).unwrap()
        }
    };
    assert_eq!(
        listed(device_token.clone()).await.len(),
        3,
        "nothing forgotten yet"
    );
    let admin = app.admin("acme");
    let r = app.call("POST", &prune, Some(&admin), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let report = r.json();
    assert_eq!(
        (
            report["forgotten"].as_u64(),
            report["kept"].as_u64(),
            report["marked"].as_u64(),
            report["records_elided"].as_u64()
        ),
        (Some(2), Some(1), Some(2), Some(0)),
        "{report}"
    );
    assert_eq!(listed(device_token.clone()).await, [snaps[2]]);
    let r = app
        .call(
            "POST",
            &format!("{base}/blocks/missing"),
            Some(&device_token),
            Some(wire::encode_ids(&ids)),
        )
        .await;
    let mut missing = wire::decode_ids(&r.body).unwrap();
    missing.sort_unstable();
    assert_eq!(missing, sorted(vec![ids[0], ids[1]]));
    let (_, status) = put_snapshot(9, RefList::delta(BlockId::from_bytes([1; 32]), &[], &[])).await;
    assert_eq!(status, 409, "a list from an unknown base");
    let audit = app.services.db.audit_entries(&t()).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "archive.prune" && a.target == "ana")
    );
}

/// A crash after any durable step of a prune (the forget record, the rows, the marks, each
/// segment's compaction, the marks of elided blocks) loses nothing a kept snapshot reaches: the
/// service restarts, a backup commits a snapshot naming a block the crashed prune marked (or
/// elided: then it is uploaded again first), and the next prune finishes the work. After it,
/// every block a kept snapshot reaches reads back byte for byte, everything else is gone, the
/// listing is the kept snapshots, and no mark is left behind.
#[test]
fn a_crash_after_any_step_of_prune_loses_nothing_still_referenced() {
    let mut stop_after = 1;
    loop {
        let mut r = Repo::new();
        let (versions, all) = ten_versions(&r);
        let grace_zero = PruneOptions {
            grace_secs: 0,
            live_threshold_pct: 100,
            ..PruneOptions::default()
        };
        let interrupted = r
            .archives
            .prune_interrupted(
                &t(),
                &u(),
                &forgetting(&versions, 7, true),
                T0,
                grace_zero,
                stop_after,
            )
            .unwrap();
        let finished = interrupted.is_some();
        r.restart();
        // A backup after the crash brings back version 0's first block.
        let (last, last_full) = versions.last().unwrap();
        let revived = block(&r.sealer, 0);
        let mut full = last_full.clone();
        full.push(revived.0);
        full.sort_unstable();
        let list = RefList::delta(*last, last_full, &full);
        let newest = match r.snapshot(11, &list) {
            Ok(id) => id,
            Err(StoreError::Refs(RefsRefusal::Pruned(ids))) => {
                assert_eq!(ids, [revived.0], "step {stop_after}");
                r.upload(std::slice::from_ref(&revived));
                r.snapshot(11, &list).unwrap()
            }
            Err(e) => panic!("step {stop_after}: {e}"),
        };
        r.archives
            .prune(
                &t(),
                &u(),
                &forgetting(&versions, 7, true),
                T0 + 1,
                grace_zero,
            )
            .unwrap();
        r.restart();
        let kept: HashSet<BlockId> = versions[7..]
            .iter()
            .flat_map(|(_, l)| l.clone())
            .chain(full.iter().copied())
            .collect();
        for (id, bytes) in &all {
            if kept.contains(id) {
                let read = r
                    .read(id)
                    .unwrap_or_else(|e| panic!("step {stop_after}: {id}: {e}"));
                if *id == revived.0 {
                    // Either copy: the one stored first, or the one uploaded again.
                    assert!(read == *bytes || read == revived.1, "step {stop_after}");
                } else {
                    assert_eq!(&read, bytes, "step {stop_after}");
                }
            } else {
                assert!(
                    matches!(r.read(id), Err(StoreError::NotFound)),
                    "step {stop_after}: {id} should be gone"
                );
            }
        }
        let listed: HashSet<BlockId> = r
            .archives
            .snapshots(&t(), &u())
            .unwrap()
            .into_iter()
            .collect();
        let mut expect: HashSet<BlockId> = versions[7..].iter().map(|(i, _)| *i).collect();
        expect.insert(newest);
        assert_eq!(listed, expect, "step {stop_after}");
        assert!(
            r.rt.block_on(r.db.prune_marks(&t(), &u()))
                .unwrap()
                .is_empty(),
            "step {stop_after}: marks left"
        );
        if finished {
            // Every step was crashed after at least once.
            assert!(stop_after > 10, "only {stop_after} steps");
            break;
        }
        stop_after += 1;
    }
}

/// Retention applies itself: the servers' maintenance prunes every archive once per
/// `every_hours` (`scheduled_prune`), one instance claiming each run; the first run is one
/// interval after the first look, and `every_hours` 0 turns it off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_archive_is_pruned_on_schedule_once_per_interval() {
    use cairn_server::wire;
    use common::{seed, start_app};

    let app = start_app().await;
    seed(&app, "acme", 1 << 30, &["ana"]).await;
    let (_, device_token, _) = common::enroll(&app, "acme", "ana").await;
    let s = sealer();
    let (id, bytes) = block(&s, 77);
    let r = app
        .call(
            "POST",
            "/v1/tenants/acme/users/ana/blocks",
            Some(&device_token),
            Some(wire::encode_batch(&[&bytes[..]])),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let svc = &app.services;
    let db = &svc.db;
    let runs = || async {
        sqlx::query(
            "SELECT COUNT(*) FROM audit WHERE action = 'archive.prune' AND actor = 'scheduled'",
        )
        .fetch_one(db.pool())
        .await
        .map(|r| sqlx::Row::get::<i64, _>(&r, 0))
        .unwrap()
    };
    // The first look records the time; nothing is due yet, nor just after.
    assert_eq!(cairn_server::scheduled_prune(svc).await.unwrap(), 0);
    assert_eq!(cairn_server::scheduled_prune(svc).await.unwrap(), 0);
    let back_a_day = || async {
        sqlx::query("UPDATE operator_settings SET changed_unix = changed_unix - 86400 WHERE name = 'prune_last_run'")
            .execute(db.pool())
            .await
            .unwrap();
    };
    back_a_day().await;
    assert_eq!(cairn_server::scheduled_prune(svc).await.unwrap(), 1);
    assert_eq!(runs().await, 1);
    // Claimed: the next look (another instance's, say) finds nothing due.
    assert_eq!(cairn_server::scheduled_prune(svc).await.unwrap(), 0);
    // The block no snapshot reaches is marked by the run.
    let marks = db.prune_marks(&t(), &u()).await.unwrap();
    assert!(marks.contains_key(&hex::encode(id.as_bytes())));
    // Off: never, even when due.
    let mut off = db.prune_options().await.unwrap();
    off.every_hours = 0;
    db.set_prune_options(&off).await.unwrap();
    back_a_day().await;
    assert_eq!(cairn_server::scheduled_prune(svc).await.unwrap(), 0);
    assert_eq!(runs().await, 1);
}
