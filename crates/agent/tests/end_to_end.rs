//! The agent against a real server over TLS on 127.0.0.1: enrollment, backup, restore, the
//! second backup, events linked to snapshots, deauthorization, spooled events across an outage,
//! and no plaintext in the server's data directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;

use cairn_agent::state::{AgentDir, names};
use cairn_agent::{Agent, AgentError};
use cairn_events::ocsf::{TENANT_KEYED_BLAKE3, TENANT_KEYED_SHA256};
use cairn_events::v1;
use common::{TENANT, find_bytes, listing, make_tree, run_in_background, world};

const MARKER: &str = "PLAINTEXT-MARKER-7f3a9c";

#[test]
fn backup_restore_incremental_events_and_no_plaintext_on_the_server() {
    let w = world();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src, MARKER, 6 << 20);
    let mut agent = w.enroll("ana", &tmp.path().join("agent"));

    let first = agent.backup(Some(&src)).unwrap();
    assert_eq!(first.seq, 0);
    assert!(first.summary.bytes_read >= 6 << 20);
    let entries = listing(&src).len() as u64;
    assert_eq!(first.changes, [entries, 0, 0, 0], "every entry is new");
    assert_eq!(first.events_queued, entries);
    assert_eq!(first.events_sent, entries);

    // Restore is byte-identical: contents, names, empty files and folders, modes, symlinks.
    let out = tmp.path().join("restored");
    let (before, _, _) = agent.traffic();
    agent.restore("latest", None, &out).unwrap();
    assert_eq!(listing(&out), listing(&src));
    // Chunks are fetched several per request: fewer requests than blocks.
    let (after, _, _) = agent.traffic();
    assert!(
        after - before < first.summary.blocks_sent,
        "{} requests for {} blocks",
        after - before,
        first.summary.blocks_sent
    );
    // A single path, by a unique prefix of the snapshot id.
    let one = tmp.path().join("one");
    agent
        .restore(&first.snapshot[..12], Some("docs/über"), &one)
        .unwrap();
    assert_eq!(listing(&one), listing(&src.join("docs/über")));

    // The second backup of unchanged data sends almost nothing: a snapshot and no block.
    let second = agent.backup(None).unwrap();
    assert_eq!(second.seq, 1);
    assert_eq!(second.changes, [0, 0, 0, 0]);
    assert_eq!(
        second.summary.bytes_read, 0,
        "the file cache skipped every file"
    );
    assert!(
        second.bytes_up < 4096,
        "second backup sent {} bytes",
        second.bytes_up
    );

    // A change: one update event, linked to the snapshot that preserves the new version.
    fs::write(src.join("docs/report.txt"), format!("revised {MARKER}\n")).unwrap();
    let third = agent.backup(None).unwrap();
    assert_eq!(third.changes, [0, 1, 0, 0]);
    let events = w.events();
    assert_eq!(events.len() as u64, entries + 1);
    let update = events
        .iter()
        .find(|e| e["activity_id"] == 3)
        .expect("an update event");
    assert!(
        update["file"]["path"]
            .as_str()
            .unwrap()
            .ends_with("/docs/report.txt")
    );
    // Its hashes are the new contents' SHA-256 and BLAKE3, from the backup's own read, as the
    // server stores them: keyed for the tenant.
    let revised = format!("revised {MARKER}\n");
    let hashes = update["file"]["hashes"].as_array().unwrap();
    let hash = |name: &str| {
        hashes
            .iter()
            .find(|h| h["algorithm"] == name)
            .map(|h| h["value"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        hash(TENANT_KEYED_SHA256),
        Some(w.keyed(
            "sha256",
            &<sha2::Sha256 as sha2::Digest>::digest(revised.as_bytes())
        ))
    );
    assert_eq!(
        hash(TENANT_KEYED_BLAKE3),
        Some(w.keyed("blake3", blake3::hash(revised.as_bytes()).as_bytes()))
    );
    let link = &update["unmapped"]["cairn_backup"];
    assert_eq!(link["snapshot_id"], third.snapshot.as_str());
    assert_eq!(
        link["archive_id"],
        hex::encode(agent.archive().as_bytes()).as_str()
    );
    assert_eq!(link["file_version"], third.seq);

    // A move is one rename event, found by contents: for a chunked file, and for a small
    // file stored in a pack (referenced there again, not re-sent).
    fs::rename(src.join("large.bin"), src.join("docs/moved.bin")).unwrap();
    fs::rename(src.join("docs/many-lines.txt"), src.join("moved-lines.txt")).unwrap();
    let fourth = agent.backup(None).unwrap();
    assert_eq!(fourth.changes, [2, 0, 0, 2]);
    assert_eq!(fourth.events_queued, 2);
    assert_eq!(fourth.summary.files_deduplicated, 1, "{:?}", fourth.summary);
    assert_eq!(fourth.summary.files_packed, 0, "{:?}", fourth.summary);
    let events = w.events();
    assert!(events.iter().any(|e| {
        e["activity_id"] == 5
            && e["file"]["path"]
                .as_str()
                .unwrap()
                .ends_with("/docs/many-lines.txt")
            && e["file_result"]["path"]
                .as_str()
                .unwrap()
                .ends_with("/moved-lines.txt")
    }));
    let rename = events
        .iter()
        .find(|e| e["activity_id"] == 5)
        .expect("a rename");
    // OCSF: the old name in `file`, the new one in `file_result`.
    assert!(
        rename["file"]["path"]
            .as_str()
            .unwrap()
            .ends_with("/large.bin")
    );
    assert!(
        rename["file_result"]["path"]
            .as_str()
            .unwrap()
            .ends_with("/docs/moved.bin")
    );

    // Check: every snapshot's structure and every data block.
    let report = agent.check(true).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.snapshots, 4);
    let status = agent.status().unwrap();
    assert_eq!(status.spool.batches, 0);
    assert_eq!(status.head.unwrap().split(' ').next(), Some("3"));

    // Nothing the agent read is on the server in the clear: not contents, not names (events
    // carry paths, sealed at rest).
    drop(agent);
    if let Some(p) = find_bytes(w.data.root(), MARKER.as_bytes()) {
        panic!("plaintext marker found in {}", p.display());
    }
}

#[test]
fn deauthorization_removes_the_key_and_stops_the_agent() {
    let w = world();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src, MARKER, 1 << 20);
    let dir = tmp.path().join("agent");
    let mut agent = w.enroll("bo", &dir);
    agent.backup(Some(&src)).unwrap();
    let device = agent.config().device.clone();

    let (status, _) = w.admin_call(
        "POST",
        &format!("/v1/tenants/{TENANT}/devices/{device}/deauthorize"),
        None,
    );
    assert_eq!(status, 204);
    fs::write(src.join("new.txt"), b"after").unwrap();
    match agent.backup(None) {
        Err(AgentError::Deauthorized) => {}
        other => panic!("expected Deauthorized, got {other:?}"),
    }
    assert!(!dir.join(names::KEY).exists(), "the key file is gone");
    assert!(!dir.join(names::SECRET).exists());
    assert!(!dir.join(names::CONFIG).exists());
    assert!(dir.join(names::DEAUTHORIZED).exists());
    // It stays stopped: opening it again says why.
    drop(agent);
    match Agent::open(&AgentDir::at(&dir)) {
        Err(AgentError::Deauthorized) => {}
        other => panic!("expected Deauthorized, got {other:?}"),
    }
}

fn event(path: &str) -> v1::FileEvent {
    let mut id = vec![0u8; 16];
    getrandom::fill(&mut id).unwrap();
    v1::FileEvent {
        event_id: id,
        observed_unix_nanos: i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        )
        .unwrap(),
        activity: v1::Activity::Create as i32,
        file: Some(v1::File {
            path: path.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn events_spooled_during_an_outage_arrive_once_after_it() {
    let mut w = world();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("agent");
    let agent = w.enroll("cy", &dir);

    w.crash();
    let outage: Vec<_> = (0..1500)
        .map(|i| event(&format!("/home/cy/f{i}")))
        .collect();
    agent.queue_events(outage).unwrap();
    assert!(matches!(agent.send_events(), Err(AgentError::Transport(_))));
    assert_eq!(agent.status().unwrap().spool.batches, 2);
    // The agent restarts during the outage: the spool is on disk.
    drop(agent);
    let agent = Agent::open(&AgentDir::at(&dir)).unwrap();
    assert_eq!(agent.status().unwrap().spool.batches, 2);

    w.restart();
    assert_eq!(agent.send_events().unwrap(), 1500);
    assert_eq!(agent.send_events().unwrap(), 0);
    assert_eq!(w.events().len(), 1500);
    let stats = agent.status().unwrap().spool;
    assert_eq!(
        (stats.batches, stats.dropped_full, stats.dropped_refused),
        (0, 0, 0)
    );
}

#[test]
fn run_backs_up_what_the_watcher_sees() {
    let w = world();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("a")).unwrap();
    fs::write(src.join("a/first.txt"), b"first").unwrap();
    let mut agent = w.enroll("eve", &tmp.path().join("agent"));
    // The agent's own directory may not be inside the folder it backs up.
    match agent.backup(Some(tmp.path())) {
        Err(AgentError::Usage(m)) => assert!(m.contains("inside"), "{m}"),
        other => panic!("expected a usage error, got {other:?}"),
    }

    let running = run_in_background(agent, &src);
    assert_eq!(running.next(), Ok([2, 0, 0, 0]), "the first backup");
    // A new folder and a file in it: seen by the watcher, backed up without being asked.
    fs::create_dir(src.join("new")).unwrap();
    fs::write(src.join("new/second.txt"), b"second").unwrap();
    let mut added = 0;
    while added < 2 {
        added += running.next().unwrap()[0];
    }
    assert_eq!(added, 2);
    drop(running.stop());
    let events = w.events();
    assert!(events.iter().any(|e| {
        e["file"]["path"]
            .as_str()
            .unwrap()
            .ends_with("/new/second.txt")
    }));
}

#[test]
fn the_agents_tls_configuration_negotiates_http2_and_trusts_only_the_pinned_ca() {
    let w = world();
    let version = w.rt().block_on(async {
        w.http
            .get(format!("{}/healthz", w.url()))
            .send()
            .await
            .unwrap()
            .version()
    });
    assert_eq!(version, reqwest::Version::HTTP_2);
    // Another CA (a second server's): the handshake fails, no request is made.
    let other = world();
    let stranger = reqwest::Client::builder()
        .use_preconfigured_tls(
            cairn_agent::tls::client_config(
                &fs::read(other.data.pki().dir().join("ca.pem")).unwrap(),
            )
            .unwrap(),
        )
        .build()
        .unwrap();
    let refused = w
        .rt()
        .block_on(stranger.get(format!("{}/healthz", w.url())).send());
    assert!(refused.is_err());
}

#[test]
fn two_devices_of_one_user_back_up_side_by_side() {
    let w = world();
    let tmp = tempfile::tempdir().unwrap();
    let (laptop_src, desktop_src) = (tmp.path().join("laptop"), tmp.path().join("desktop"));
    fs::create_dir_all(&laptop_src).unwrap();
    fs::create_dir_all(&desktop_src).unwrap();
    fs::write(laptop_src.join("l.txt"), b"laptop").unwrap();
    fs::write(desktop_src.join("d.txt"), b"desktop").unwrap();
    // Each device has its own archive key; the user's archive on the server holds both.
    let mut laptop = w.enroll("fay", &tmp.path().join("agent-laptop"));
    let mut desktop = w.enroll("fay", &tmp.path().join("agent-desktop"));
    laptop.backup(Some(&laptop_src)).unwrap();
    desktop.backup(Some(&desktop_src)).unwrap();
    laptop.backup(None).unwrap();
    assert_eq!(laptop.snapshots().unwrap().len(), 2);
    assert_eq!(desktop.snapshots().unwrap().len(), 1);
    let report = desktop.check(true).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!((report.snapshots, report.foreign_snapshots), (1, 2));
    let out = tmp.path().join("out");
    desktop.restore("latest", None, &out).unwrap();
    assert_eq!(listing(&out), listing(&desktop_src));
}

/// File activity while the server is down: the watcher's observations are durable (they
/// survive an agent restart), and once the server is back the backup turns them into events
/// that carry the time the activity was seen, each stored once, with hashes and links.
#[test]
fn activity_seen_during_an_outage_arrives_once_with_its_time() {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    let now_ms = || {
        i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap()
    };
    let mut w = world();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("keep.txt"), b"as it was").unwrap();
    fs::write(src.join("old.txt"), b"about to go").unwrap();
    let dir = tmp.path().join("agent");
    let mut agent = w.enroll("fay", &dir);
    agent.backup(Some(&src)).unwrap();

    w.crash();
    let outage_began = now_ms();
    let observations = agent.observations();
    let running = run_in_background(agent, &src);
    // The run's first backup fails: the server is down.
    assert!(running.next().is_err());
    fs::write(src.join("new.txt"), b"made while the server was down").unwrap();
    fs::write(src.join("keep.txt"), b"changed while the server was down").unwrap();
    fs::remove_file(src.join("old.txt")).unwrap();
    // A file that exists only during the outage: no backup ever holds it.
    fs::write(src.join("staging.zip"), b"gathered, then sent elsewhere").unwrap();
    // Removed once the watcher's sighting of it is on disk.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !observations
        .waiting()
        .unwrap()
        .keys()
        .any(|p| p.ends_with("staging.zip"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the watcher never saw staging.zip"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    fs::remove_file(src.join("staging.zip")).unwrap();
    // The handle keeps the spool open: gone before the agent reopens it.
    drop(observations);
    let activity_done = now_ms();
    // Two more failed attempts: the watcher has long reported the changes.
    for _ in 0..2 {
        assert!(running.next().is_err());
    }
    let agent = running.stop();
    assert!(agent.status().unwrap().spool.observed >= 4);
    // The agent restarts during the outage: the observations are on disk.
    drop(agent);
    let mut agent = Agent::open(&AgentDir::at(&dir)).unwrap();
    assert!(agent.status().unwrap().spool.observed >= 4);

    // The server comes back strictly after the activity, on the clock the events carry.
    while now_ms() <= activity_done {
        std::thread::yield_now();
    }
    w.restart();
    let back = now_ms();
    let report = agent.backup(None).unwrap();
    assert_eq!(report.changes, [1, 1, 0, 1], "{report:?}");
    assert_eq!(agent.status().unwrap().spool.observed, 0);
    assert_eq!(agent.send_events().unwrap(), 0, "sent with the backup");

    let events = w.events();
    let named = |name: &str| -> Vec<&serde_json::Value> {
        events
            .iter()
            .filter(|e| {
                e["file"]["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with(&format!("/{name}")))
            })
            .collect()
    };
    for (name, activity) in [("new.txt", 1), ("keep.txt", 3), ("old.txt", 4)] {
        let found = named(name);
        let after_first: Vec<_> = found
            .iter()
            .filter(|e| e["time"].as_i64().unwrap() >= outage_began)
            .collect();
        assert_eq!(after_first.len(), 1, "{name}: {found:?}");
        assert_eq!(after_first[0]["activity_id"], activity, "{name}");
    }
    // The short-lived file: created and deleted, no contents, no link.
    let staging = named("staging.zip");
    let activities: Vec<_> = staging.iter().map(|e| e["activity_id"].clone()).collect();
    assert_eq!(activities, [1, 4], "{staging:?}");
    assert!(
        staging
            .iter()
            .all(|e| e["unmapped"]["cairn_backup"].is_null())
    );
    // Every event from the outage carries the time it was seen, not when the server came back.
    for name in ["new.txt", "keep.txt", "old.txt", "staging.zip"] {
        for e in named(name) {
            let time = e["time"].as_i64().unwrap();
            if time < outage_began {
                continue; // the first backup's
            }
            assert!(
                time <= activity_done + 1000 && time < back,
                "{name}: time {time}, outage {outage_began}..{back}"
            );
        }
    }
    let new = named("new.txt")[0];
    let blake3 = new["file"]["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["algorithm"] == TENANT_KEYED_BLAKE3)
        .map(|h| h["value"].as_str().unwrap().to_owned());
    assert_eq!(
        blake3,
        Some(w.keyed(
            "blake3",
            blake3::hash(b"made while the server was down").as_bytes()
        ))
    );
    assert_eq!(
        new["unmapped"]["cairn_backup"]["snapshot_id"],
        report.snapshot.as_str()
    );
}

/// A copy of a backed-up file to an exposure destination outside the folder (a removable disk
/// here) is an event with that exposure and the same hashes as the original's backup event, so
/// the two can be matched.
#[test]
fn a_copy_to_a_removable_disk_outside_the_folder_is_reported() {
    use std::time::{Duration, Instant};

    let w = world();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let usb = tmp.path().join("media/usb-stick");
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&usb).unwrap();
    let secret = b"quarterly numbers, not for sharing";
    fs::write(src.join("secret.txt"), secret).unwrap();
    let dir = tmp.path().join("agent");
    drop(w.enroll("gus", &dir));
    let agent_dir = AgentDir::at(&dir);
    let mut config = agent_dir.config().unwrap();
    config.exposure.push(cairn_agent::events::ExposureRule {
        kind: "removable-media".into(),
        prefix: tmp.path().join("media"),
    });
    agent_dir.save_config(&config).unwrap();
    let agent = Agent::open(&agent_dir).unwrap();

    let running = run_in_background(agent, &src);
    assert!(running.next().is_ok());
    fs::copy(src.join("secret.txt"), usb.join("secret.txt")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let copy = loop {
        let found = w.events().into_iter().find(|e| {
            e["file"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("/usb-stick/secret.txt"))
        });
        if let Some(e) = found {
            break e;
        }
        assert!(Instant::now() < deadline, "the copy was never reported");
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(running.stop());

    assert_eq!(copy["activity_id"], 1, "{copy}");
    let exposure = &copy["unmapped"]["cairn_exposure"];
    assert_eq!(exposure["kind"], "removable_media", "{copy}");
    assert!(copy["unmapped"]["cairn_backup"].is_null(), "not backed up");
    let blake3_of = |e: &serde_json::Value| {
        e["file"]["hashes"]
            .as_array()
            .and_then(|h| h.iter().find(|h| h["algorithm"] == TENANT_KEYED_BLAKE3))
            .map(|h| h["value"].as_str().unwrap().to_owned())
    };
    let original = w
        .events()
        .into_iter()
        .find(|e| {
            e["file"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("/src/secret.txt"))
        })
        .unwrap();
    let expected = w.keyed("blake3", blake3::hash(secret).as_bytes());
    assert_eq!(blake3_of(&copy).as_deref(), Some(expected.as_str()));
    assert_eq!(blake3_of(&original), blake3_of(&copy));
}

/// Several folders in one snapshot: restored at their absolute paths, events named by absolute
/// paths in both, the set fixed by the first backup, and `run` watching every folder.
#[test]
fn several_folders_back_up_restore_and_report_together() {
    let w = world();
    let tmp = tempfile::tempdir().unwrap();
    let base = fs::canonicalize(tmp.path()).unwrap();
    let (docs, pics) = (base.join("home/docs"), base.join("media-lib/pics"));
    make_tree(&docs, "several", 300_000);
    fs::create_dir_all(&pics).unwrap();
    fs::write(pics.join("cat.jpg"), common::noise(3, 50_000)).unwrap();
    let mut agent = w.enroll("hal", &base.join("agent"));
    let first = agent.backup_folders(&[docs.clone(), pics.clone()]).unwrap();
    assert_eq!(first.folders, [docs.clone(), pics.clone()]);
    // The set is fixed: another folder, or a folder inside one of them, is refused.
    for bad in [vec![docs.clone()], vec![docs.clone(), docs.join("sub")]] {
        assert!(
            matches!(agent.backup_folders(&bad), Err(AgentError::Usage(_))),
            "{bad:?}"
        );
    }
    let out = base.join("restored");
    agent.restore("latest", None, &out).unwrap();
    let under = |p: &std::path::Path| out.join(p.strip_prefix("/").unwrap());
    assert_eq!(listing(&under(&docs)), listing(&docs));
    assert_eq!(listing(&under(&pics)), listing(&pics));
    let events = w.events();
    for folder in [&docs, &pics] {
        assert!(
            events.iter().any(|e| e["file"]["path"]
                .as_str()
                .is_some_and(|p| p.starts_with(&format!("{}/", folder.display())))),
            "no event under {}",
            folder.display()
        );
    }

    // `run` over the remembered folders sees a change in the second one.
    let running = common::run_folders_in_background(agent, &[]);
    assert!(running.next().is_ok());
    fs::write(pics.join("dog.jpg"), b"woof").unwrap();
    let mut added = 0;
    while added == 0 {
        added = running.next().unwrap()[0];
    }
    drop(running.stop());
    let dog = format!("{}/dog.jpg", pics.display());
    assert!(
        w.events()
            .iter()
            .any(|e| e["file"]["path"] == dog.as_str() && e["activity_id"] == 1)
    );
}
