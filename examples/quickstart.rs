//! Cairn end to end in one command, on the embedded defaults:
//!
//! ```sh
//! cargo run --release --example quickstart [DIR]
//! ```
//!
//! It starts the server in-process (TLS on 127.0.0.1, a fresh data directory whose secret files
//! a key-encryption key beside it seals, SQLite, segments on local disk), creates a tenant, a user and a device through the API, enrolls an agent
//! (the archive key is generated on the "endpoint" and escrowed to the server's key), backs up
//! DIR (default: a generated sample), changes a file of the sample and backs up again, shows
//! the file events the server stored (each linked to the snapshot that preserves the version),
//! restores the latest snapshot into a fresh folder, verifies every byte, and prints a summary.
//! DIR, when given, is only read.

// A binary: printing is its job, and errors end it with a message and a non-zero exit code.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cairn::agent::compare::compare;
use cairn::agent::state::AgentDir;
use cairn::agent::{Agent, BackupReport, Enrollment, Escrow};
use cairn::server::{DataDir, Embedded};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const TENANT: &str = "demo";
const USER: &str = "ana";

/// A deterministic pseudo-random stream (xorshift), so that the sample does not compress away.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A small sample: documents, a photo-sized binary, a copy of it (deduplicated), unicode
/// names, an empty file, nested folders.
fn make_sample(root: &Path) -> Result<()> {
    fs::create_dir_all(root.join("Documents/Projets/été"))?;
    fs::create_dir_all(root.join("Pictures"))?;
    fs::write(
        root.join("Documents/notes.txt"),
        "Remember: the backup is encrypted before it leaves this machine.\n",
    )?;
    let mut report = String::new();
    for q in 1..=400 {
        report.push_str(&format!("line {q}: revenue {} units\n", q * 37 % 1000));
    }
    fs::write(root.join("Documents/Projets/été/rapport.csv"), report)?;
    fs::write(root.join("Pictures/holiday.raw"), noise(42, 3 << 20))?;
    fs::write(root.join("Pictures/holiday (copy).raw"), noise(42, 3 << 20))?;
    fs::write(root.join("Documents/empty.txt"), b"")?;
    fs::write(root.join("Documents/日本語.txt"), "こんにちは\n")?;
    Ok(())
}

fn print_backup(label: &str, r: &BackupReport, elapsed: Duration) {
    let s = &r.summary;
    let mib = s.bytes_read as f64 / f64::from(1 << 20);
    println!(
        "  {label}: snapshot {} (#{}) {} entries, read {:.1} MiB ({} files unchanged, not read), \
         sent {} blocks / {:.2} MiB in {} requests, {:.2} s ({:.0} MiB/s)",
        &r.snapshot[..16],
        r.seq,
        s.entries,
        mib,
        s.files_unchanged,
        s.blocks_sent,
        r.bytes_up as f64 / f64::from(1 << 20),
        r.requests,
        elapsed.as_secs_f64(),
        mib / elapsed.as_secs_f64().max(1e-9)
    );
    println!(
        "    changes: {} added, {} modified, {} attributes, {} removed -> {} events ({} delivered)",
        r.changes[0], r.changes[1], r.changes[2], r.changes[3], r.events_queued, r.events_sent
    );
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(std::result::Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

struct Admin<'a> {
    rt: &'a tokio::runtime::Runtime,
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Admin<'_> {
    fn call(&self, method: reqwest::Method, path: &str, body: Option<String>) -> Result<Vec<u8>> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        self.rt.block_on(async {
            let resp = req.send().await?;
            let status = resp.status();
            let body = resp.bytes().await?.to_vec();
            if !status.is_success() {
                return Err(format!("{method} {path}: {status}").into());
            }
            Ok(body)
        })
    }
}

fn run() -> Result<()> {
    let started = Instant::now();
    let given = std::env::args_os().nth(1).map(PathBuf::from);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let work =
        std::env::temp_dir().join(format!("cairn-quickstart-{stamp}-{}", std::process::id()));
    fs::create_dir_all(&work)?;
    println!("Cairn quickstart (working folder {})\n", work.display());

    // 1. The server, in-process, on the embedded defaults.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Its secret files sealed by a key-encryption key kept beside, not inside, the data
    // directory (docs/format/kek.md).
    let kek = work.join("server.kek");
    let data = DataDir::at(work.join("server")).with_kek_file(&kek);
    let server = rt.block_on(Embedded::start(data, "127.0.0.1:0".parse()?))?;
    let ca = server.ca_pem()?;
    println!(
        "1. server: {} (TLS 1.3, AES-256-GCM; CA pinned by the agent; keys sealed by {})",
        server.url(),
        kek.display()
    );

    // 2. A tenant, a user and a device, through the API as the tenant's administrator.
    let admin = Admin {
        rt: &rt,
        http: reqwest::Client::builder()
            .use_preconfigured_tls(cairn::agent::tls::client_config(&ca)?)
            .build()?,
        url: server.url(),
        token: rt.block_on(server.add_tenant(TENANT, "admin", 1 << 40))?,
    };
    admin.call(
        reqwest::Method::POST,
        &format!("/v1/tenants/{TENANT}/users"),
        Some(serde_json::json!({"id": USER, "role": "user"}).to_string()),
    )?;
    let device: serde_json::Value = serde_json::from_slice(&admin.call(
        reqwest::Method::POST,
        &format!("/v1/tenants/{TENANT}/devices"),
        Some(serde_json::json!({"user": USER, "name": "laptop"}).to_string()),
    )?)?;
    let device_id = device["device"].as_str().ok_or("no device id")?;
    let enrollment = device["token"].as_str().ok_or("no enrollment token")?;
    println!("2. tenant {TENANT}, user {USER}, device {device_id} (one-use enrollment token)");

    // 3. The agent enrolls: its archive key is made here and escrowed to the server's key.
    let agent_dir = AgentDir::at(work.join("agent"));
    let mut agent = Agent::enroll(
        &agent_dir,
        Enrollment {
            server: &server.url(),
            ca_pem: &ca,
            tenant: TENANT,
            device: device_id,
            token: enrollment,
            host: "quickstart",
            escrow: Escrow::Standard,
        },
    )?;
    println!(
        "3. agent enrolled: key in {} (owner-only), escrow envelope deposited",
        agent_dir.path("archive.key").display()
    );

    // 4. First backup.
    let sample = given.is_none();
    let folder = match &given {
        Some(dir) => dir.clone(),
        None => {
            let dir = work.join("sample");
            make_sample(&dir)?;
            dir
        }
    };
    println!("4. backing up {}", folder.display());
    let t = Instant::now();
    let first = agent.backup(Some(&folder))?;
    print_backup("first backup", &first, t.elapsed());

    // 5. A change, and the second (incremental) backup.
    if sample {
        let notes = folder.join("Documents/notes.txt");
        let mut text = fs::read_to_string(&notes)?;
        text.push_str("Edited after the first backup.\n");
        fs::write(&notes, text)?;
        println!("5. changed {}; backing up again", notes.display());
    } else {
        println!(
            "5. backing up again ({} is yours: left unchanged)",
            folder.display()
        );
    }
    let t = Instant::now();
    let second = agent.backup(None)?;
    print_backup("second backup", &second, t.elapsed());

    // 6. The events the server stored.
    let page: serde_json::Value = serde_json::from_slice(&admin.call(
        reqwest::Method::GET,
        &format!("/v1/tenants/{TENANT}/events?limit=1000"),
        None,
    )?)?;
    let events = page["events"].as_array().cloned().unwrap_or_default();
    println!(
        "6. events stored by the server: {}{}",
        events.len(),
        if page["next"].is_string() {
            " (first page)"
        } else {
            ""
        }
    );
    let show: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["activity_id"] != 1)
        .chain(events.iter().filter(|e| e["activity_id"] == 1).take(3))
        .take(5)
        .collect();
    for e in show {
        println!(
            "  {:<7} {}  -> snapshot {} version {}",
            e["activity_name"].as_str().unwrap_or("?"),
            e["file"]["path"].as_str().unwrap_or("?"),
            e["unmapped"]["cairn_backup"]["snapshot_id"]
                .as_str()
                .map_or("-", |s| &s[..16.min(s.len())]),
            e["unmapped"]["cairn_backup"]["file_version"]
        );
    }

    // 7. Restore into a fresh folder and verify every byte.
    let restored = work.join("restored");
    let t = Instant::now();
    let r = agent.restore("latest", None, &restored)?;
    let cmp = compare(&folder, &restored)?;
    println!(
        "7. restored {} entries into {} in {:.2} s; verified {} files, {} folders, {} symlinks, {} bytes: {}",
        r.entries,
        restored.display(),
        t.elapsed().as_secs_f64(),
        cmp.files,
        cmp.dirs,
        cmp.symlinks,
        cmp.bytes,
        if cmp.identical() {
            "identical"
        } else {
            "DIFFERENT"
        }
    );
    if !cmp.identical() {
        for d in cmp.differences.iter().take(20) {
            eprintln!("  {d}");
        }
        return Err("the restore differs from the original".into());
    }
    let check = agent.check(true)?;
    if !check.errors.is_empty() {
        return Err(format!("check found problems: {:?}", check.errors).into());
    }

    // Summary.
    let read = first.summary.bytes_read + second.summary.bytes_read;
    let sent = first.bytes_up + second.bytes_up;
    let port = server.addr().port();
    drop(agent);
    rt.block_on(server.shutdown())?;
    println!("\nSummary");
    println!(
        "  {} files, {:.1} MiB backed up twice; {:.2} MiB sent in all (deduplicated and compressed: {:.2}x less)",
        cmp.files,
        cmp.bytes as f64 / f64::from(1 << 20),
        sent as f64 / f64::from(1 << 20),
        read as f64 / (sent as f64).max(1.0)
    );
    println!(
        "  {} snapshots, {} events, every data block checked, {:.1} s in all",
        check.snapshots,
        events.len(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "  server data: {} ({:.1} MiB: sealed segments, SQLite metadata, keys)",
        work.join("server").display(),
        dir_bytes(&work.join("server")) as f64 / f64::from(1 << 20)
    );
    println!("  agent state: {}", work.join("agent").display());
    println!("\nNext:");
    println!(
        "  cargo run --release --example server -- serve {} --kek-file {} --listen 127.0.0.1:{port}",
        work.join("server").display(),
        kek.display()
    );
    println!(
        "  cargo run --release --example agent -- snapshots --dir {}   (while the server runs)",
        work.join("agent").display()
    );
    println!(
        "  cargo run --release --example agent -- restore --dir {} latest --to /tmp/restore-test",
        work.join("agent").display()
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quickstart: {e}");
            ExitCode::FAILURE
        }
    }
}
