//! What the agent refuses to do for its own safety: speak plain HTTP, or read an archive whose
//! history is shorter than, or different from, the chain head it trusts (issue 27, items 1
//! and 6); and what it does with entries it cannot back up as found (items 4, 5, 8): the
//! snapshot is written without them and the report lists them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;

use cairn_agent::{Agent, AgentError, Enrollment, Escrow, state::AgentDir};
use common::{TENANT, world};

/// Item 6: an `http://` server URL is refused before anything is sent, so the enrollment token
/// never travels in clear. A plain listener sees whatever connects first: after the refused
/// enrollment, the first connection it accepts is the test's own probe.
#[test]
fn an_http_server_url_is_refused_and_nothing_is_sent() {
    let w = world();
    let (device, token) = w.register("ana");
    let ca = std::fs::read(w.data.pki().dir().join("ca.pem")).unwrap();
    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = plain.local_addr().unwrap().port();
    // What reaches the plain listener first, answered with a 404 so no client waits.
    let first = std::thread::spawn(move || {
        let (mut conn, _) = plain.accept().unwrap();
        let mut seen = vec![0u8; 4096];
        let n = conn.read(&mut seen).unwrap();
        seen.truncate(n);
        let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
        seen
    });
    let agent_dir = tempfile::tempdir().unwrap();
    let result = Agent::enroll(
        &AgentDir::at(agent_dir.path().join("agent")),
        Enrollment {
            server: &format!("http://127.0.0.1:{port}"),
            ca_pem: &ca,
            tenant: TENANT,
            device: &device,
            token: &token,
            host: "test-host",
            escrow: Escrow::Standard,
        },
    );
    match result {
        Err(AgentError::Usage(msg)) => assert!(msg.contains("https"), "{msg}"),
        Err(e) => panic!("expected a usage error naming https, got {e}"),
        Ok(_) => panic!("enrolled over plain HTTP"),
    }
    let mut probe = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    probe.write_all(b"PROBE").unwrap();
    let seen = first.join().unwrap();
    assert_eq!(
        seen,
        b"PROBE",
        "the agent connected first and sent: {}",
        String::from_utf8_lossy(&seen)
    );
    assert!(
        !agent_dir.path().join("agent").exists(),
        "a refused enrollment leaves no agent directory"
    );
    // The token was not spent: an enrollment over HTTPS still works with it.
    Agent::enroll(
        &AgentDir::at(agent_dir.path().join("agent")),
        Enrollment {
            server: &w.url(),
            ca_pem: &ca,
            tenant: TENANT,
            device: &device,
            token: &token,
            host: "test-host",
            escrow: Escrow::Standard,
        },
    )
    .unwrap();
}

/// Item 6: an agent whose configuration was edited to name a plain-HTTP server does not open.
#[test]
fn an_agent_configured_for_http_does_not_open() {
    let w = world();
    let agent_dir = tempfile::tempdir().unwrap();
    let dir = agent_dir.path().join("agent");
    drop(w.enroll("ana", &dir));
    let config = dir.join(cairn_agent::state::names::CONFIG);
    let text = std::fs::read_to_string(&config).unwrap();
    let edited = text.replace("https://", "http://");
    assert_ne!(text, edited, "the configuration names the server");
    std::fs::write(&config, edited).unwrap();
    match Agent::open(&AgentDir::at(&dir)) {
        Err(AgentError::Usage(msg)) => assert!(msg.contains("https"), "{msg}"),
        Err(e) => panic!("expected a usage error naming https, got {e}"),
        Ok(_) => panic!("opened an agent configured for plain HTTP"),
    }
}

/// How a test damages the server's copy of an archive while the server is down.
#[derive(Clone, Copy, Debug)]
enum Tamper {
    /// One bit flipped in the last commit record of the active segment (recovery cuts it).
    FlipLastCommit,
    /// The active segment cut back to its first half.
    Truncate,
    /// The active segment deleted.
    Delete,
}

/// The user's active segment in an embedded server's data directory.
fn active_segment(w: &common::World, user: &str) -> std::path::PathBuf {
    let dir = w.data.root().join("staging").join(TENANT).join(user);
    let found: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "active"))
        .collect();
    assert_eq!(found.len(), 1, "one active segment in {}", dir.display());
    found[0].clone()
}

/// Backs up `v1`, then `v2`, of one file; returns the agent, its directory and the folder.
fn two_versions(w: &common::World) -> (Agent, tempfile::TempDir, std::path::PathBuf) {
    let dirs = tempfile::tempdir().unwrap();
    let folder = dirs.path().join("docs");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("plan.txt"), b"v1: the old plan").unwrap();
    let mut agent = w.enroll("ana", &dirs.path().join("agent"));
    agent.backup(Some(&folder)).unwrap();
    std::fs::write(folder.join("plan.txt"), b"v2: the plan everybody agreed on").unwrap();
    let second = agent.backup(Some(&folder)).unwrap();
    assert_eq!(second.seq, 1);
    (agent, dirs, folder)
}

/// Every read path refuses the archive, and restores nothing.
fn assert_every_read_refuses(agent: &Agent, out: &std::path::Path) {
    let refused = |what: &str, r: Result<(), AgentError>| match r {
        Err(AgentError::History(_)) => {}
        Err(e) => panic!("{what}: expected a history error, got {e}"),
        Ok(()) => panic!("{what}: read an archive whose newest snapshot is gone"),
    };
    refused("snapshots", agent.snapshots().map(drop));
    refused("check", agent.check(false).map(drop));
    refused("check --read-data", agent.check(true).map(drop));
    refused(
        "restore latest",
        agent.restore("latest", None, out).map(drop),
    );
    assert!(!out.exists(), "a refused restore wrote {}", out.display());
}

/// Item 1: damage to the newest commit (a flipped bit, a truncated or deleted active segment)
/// is caught by every read path of the agent, and the server marks the archive damaged
/// (error log, metric, audit, archive view) instead of serving what recovery left as healthy.
#[test]
fn a_cut_of_acknowledged_history_is_refused_by_every_read_and_marked_on_the_server() {
    for tamper in [Tamper::FlipLastCommit, Tamper::Truncate, Tamper::Delete] {
        let mut w = common::world_embedded();
        let (agent, dirs, _folder) = two_versions(&w);
        w.stop();
        let segment = active_segment(&w, "ana");
        let mut bytes = std::fs::read(&segment).unwrap();
        match tamper {
            Tamper::FlipLastCommit => {
                // The commit record's payload (the data-record count) sits just before its
                // CRC, the file's last 4 bytes.
                let at = bytes.len() - 5;
                bytes[at] ^= 0x01;
                std::fs::write(&segment, &bytes).unwrap();
            }
            Tamper::Truncate => {
                bytes.truncate(bytes.len() / 2);
                std::fs::write(&segment, &bytes).unwrap();
            }
            Tamper::Delete => std::fs::remove_file(&segment).unwrap(),
        }
        w.restart();
        assert_every_read_refuses(&agent, &dirs.path().join(format!("out-{tamper:?}")));
        // The server: the archive view says what happened.
        let (status, body) = w.admin_call(
            "GET",
            &format!("/v1/tenants/{TENANT}/users/ana/archive"),
            None,
        );
        assert_eq!(status, 200);
        let view: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(view["health"], "damaged", "{tamper:?}: {view}");
        let lost = view["damage"]["lost_records"].as_i64().unwrap();
        assert!(lost >= 1, "{tamper:?}: {view}");
        let (status, body) = w.admin_call("GET", &format!("/v1/tenants/{TENANT}/audit"), None);
        assert_eq!(status, 200);
        let audit: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            audit
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["action"] == "archive.damaged" && e["target"] == "ana"),
            "{tamper:?}: no audit entry in {audit}"
        );
        let services = w.server.as_ref().unwrap().services();
        assert_eq!(
            services.archives.lost_records(),
            u64::try_from(lost).unwrap(),
            "{tamper:?}: the metric counts the lost records"
        );
    }
}

/// Item 1: an older copy of the server's whole data directory put back (database and
/// segments together, so the server itself cannot tell) is caught by the agent's chain head.
#[test]
fn an_older_copy_of_the_servers_data_put_back_is_refused() {
    let mut w = common::world_embedded();
    let dirs = tempfile::tempdir().unwrap();
    let folder = dirs.path().join("docs");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("plan.txt"), b"v1: the old plan").unwrap();
    let mut agent = w.enroll("ana", &dirs.path().join("agent"));
    agent.backup(Some(&folder)).unwrap();
    // Stopped cleanly, so that the copy (database and segments) is consistent.
    w.stop();
    let copy = dirs.path().join("server-copy");
    copy_tree(w.data.root(), &copy);
    w.restart();
    std::fs::write(folder.join("plan.txt"), b"v2: the plan everybody agreed on").unwrap();
    agent.backup(Some(&folder)).unwrap();
    w.stop();
    std::fs::remove_dir_all(w.data.root()).unwrap();
    copy_tree(&copy, w.data.root());
    w.restart();
    assert_every_read_refuses(&agent, &dirs.path().join("out"));
    // A backup refuses too (it always did).
    let mut agent = agent;
    match agent.backup(Some(&folder)) {
        Err(AgentError::History(_)) => {}
        other => panic!("backup over a rolled-back server: {other:?}"),
    }
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
            let mode = std::fs::metadata(e.path()).unwrap().permissions();
            std::fs::set_permissions(&target, mode).unwrap();
        }
    }
}

/// Item 4: an unreadable file and folder (mode 000, an agent without override rights) do not
/// abort the backup: the snapshot is written without them, the report (`--json`) lists them
/// and says "completed with warnings" (`agent backup` exits 3); a FIFO is noted.
#[cfg(unix)]
#[test]
fn an_unreadable_entry_is_left_out_and_reported_and_the_snapshot_written() {
    common::unix::unprivileged(
        "an_unreadable_entry_is_left_out_and_reported_and_the_snapshot_written",
        || {
            use std::os::unix::fs::PermissionsExt;
            let w = common::world_embedded();
            let dir = tempfile::tempdir().unwrap();
            let folder = dir.path().join("home");
            std::fs::create_dir_all(folder.join("locked")).unwrap();
            std::fs::write(folder.join("kept.txt"), b"kept").unwrap();
            std::fs::write(folder.join("secret.txt"), b"secret").unwrap();
            std::fs::write(folder.join("locked/inside.txt"), b"inside").unwrap();
            common::unix::make_fifo(&folder.join("pipe"));
            let none = std::fs::Permissions::from_mode(0o000);
            std::fs::set_permissions(folder.join("secret.txt"), none.clone()).unwrap();
            std::fs::set_permissions(folder.join("locked"), none).unwrap();
            assert!(std::fs::File::open(folder.join("secret.txt")).is_err());

            let mut agent = w.enroll("ana", &dir.path().join("agent"));
            let report = agent.backup(Some(&folder)).unwrap();
            assert!(report.completed_with_warnings);
            let json = serde_json::to_value(&report).unwrap();
            assert_eq!(json["completed_with_warnings"], true);
            let mut listed: Vec<(String, String)> = json["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| {
                    let path = std::path::PathBuf::from(w["path"].as_str().unwrap());
                    (
                        path.file_name().unwrap().to_string_lossy().into_owned(),
                        w["kind"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            listed.sort();
            assert_eq!(
                listed,
                [
                    ("locked".to_owned(), "unreadable".to_owned()),
                    ("pipe".to_owned(), "special-file".to_owned()),
                    ("secret.txt".to_owned(), "unreadable".to_owned()),
                ]
            );
            // The snapshot is on the server, and it says what it lacks.
            let snaps = agent.snapshots().unwrap();
            assert_eq!(snaps.len(), 1);
            assert_eq!(snaps[0].1.warnings_total, 3);
            let out = dir.path().join("out");
            agent.restore("latest", None, &out).unwrap();
            assert_eq!(std::fs::read(out.join("kept.txt")).unwrap(), b"kept");
            assert!(!out.join("secret.txt").exists() && !out.join("locked").exists());
            std::fs::set_permissions(
                folder.join("locked"),
                std::fs::Permissions::from_mode(0o700),
            )
            .unwrap();
        },
    );
}

/// Item 8: nothing the server keeps is readable by other local users: its data directory and
/// every directory in it are 0700, every file 0600 (certificates and the escrow public key,
/// public by design, may be 0644), segment files and the database included.
#[cfg(unix)]
#[test]
fn the_servers_files_are_private_to_its_user() {
    use std::os::unix::fs::PermissionsExt;
    let w = common::world_embedded();
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("home");
    common::make_tree(&folder, "private", 3 << 20);
    let mut agent = w.enroll("ana", &dir.path().join("agent"));
    agent.backup(Some(&folder)).unwrap();
    let root = w.data.root().to_path_buf();
    let mut seen = (0, 0);
    let mut open_to_others = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            open_to_others.push(format!("{} {mode:o}", d.display()));
        }
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
                continue;
            }
            let mode = meta.permissions().mode() & 0o777;
            let name = e.file_name().to_string_lossy().into_owned();
            let public = ["ca.pem", "server.pem", "escrow.pub"].contains(&name.as_str());
            if e.path().starts_with(root.join("segments"))
                || e.path().starts_with(root.join("staging"))
            {
                seen.0 += 1;
            }
            seen.1 += 1;
            if mode & 0o077 != 0 && !public {
                open_to_others.push(format!("{} {mode:o}", e.path().display()));
            }
        }
    }
    // The precondition: segment files were written (and more files beside them).
    assert!(seen.0 > 0 && seen.1 > seen.0, "{seen:?}");
    assert!(
        open_to_others.is_empty(),
        "readable by others: {open_to_others:#?}"
    );
}

/// Item 8: `agent enroll --ca FILE` with a missing or unusable file says which file.
#[test]
fn a_missing_or_unusable_ca_file_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-ca.pem");
    match cairn_agent::tls::read_ca(&missing) {
        Err(AgentError::Usage(msg)) => {
            assert!(msg.contains(&missing.display().to_string()), "{msg}");
        }
        other => panic!("expected a usage error naming the file, got {other:?}"),
    }
    let not_pem = dir.path().join("ca.txt");
    std::fs::write(&not_pem, b"not a certificate").unwrap();
    match cairn_agent::tls::read_ca(&not_pem) {
        Err(AgentError::Usage(msg)) => {
            assert!(msg.contains(&not_pem.display().to_string()), "{msg}");
            assert!(msg.contains("no certificate"), "{msg}");
        }
        other => panic!("expected a usage error naming the file, got {other:?}"),
    }
    let w = common::world();
    let good = w.data.pki().dir().join("ca.pem");
    assert!(
        cairn_agent::tls::read_ca(&good)
            .unwrap()
            .starts_with(b"-----BEGIN")
    );
}
