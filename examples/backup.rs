//! A local backup tool over a repository directory (no server): the thin binary for
//! `cairn-backup` on a `cairn-archive` log, and what the peer benchmark runs.
//!
//! ```sh
//! cargo run --release --example backup -- init REPO
//! cargo run --release --example backup -- backup REPO DIR
//! cargo run --release --example backup -- snapshots REPO
//! cargo run --release --example backup -- restore REPO latest|SNAPSHOT TARGET [--path a/b]
//! cargo run --release --example backup -- check REPO [--read-data | --read-data-subset N/T]
//! ```
//!
//! The repository holds `log/` (the archive segments), `archive-id`, `head` (`SEQ ID` of the last
//! snapshot this tool wrote: a log that was rolled back or forked behind it is refused, B-8)
//! and, for this local tool only, `key` (the archive key, mode 0600) and `cache.redb` (the file
//! cache). The agent keeps the key, head and cache on the endpoint and the log on the server
//! instead. Progress bars are drawn on a terminal; `--quiet` turns them off.

// A binary: printing is its job, and errors end it with a message and a non-zero exit code.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::fs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use cairn::archive::{Config, DirStorage};
use cairn::backup::{
    ArchiveStore, BackupOptions, ChainHead, DataCheck, FileCache, Repository, Snapshot, check_chain,
};
use cairn::keys::ArchiveKey;
use cairn::seal::{ArchiveId, BlockId};
use clap::{Arg, ArgAction, Command};

#[path = "support/bars.rs"]
mod bars;
use bars::Bars;

/// Segment size of the local tool's log.
const SEGMENT_TARGET: u64 = 16 << 20;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Result<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return Err("odd-length hex".into());
    }
    (0..s.len() / 2)
        .map(|i| Ok(u8::from_str_radix(&s[2 * i..2 * i + 2], 16)?))
        .collect()
}

struct Repo {
    dir: PathBuf,
    repo: Repository<ArchiveStore<DirStorage>>,
}

/// The head this tool last wrote, if any.
fn read_head(dir: &Path) -> Result<Option<ChainHead>> {
    match fs::read_to_string(dir.join("head")) {
        Ok(text) => Ok(Some(text.parse()?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The log's snapshots, checked against our head (B-8).
fn checked_snapshots(r: &Repo) -> Result<Vec<(BlockId, Snapshot)>> {
    let snapshots = r.repo.snapshots()?;
    check_chain(&snapshots, read_head(&r.dir)?.as_ref())?;
    Ok(snapshots)
}

fn open(dir: &Path) -> Result<Repo> {
    let key_bytes: [u8; 32] = unhex(fs::read_to_string(dir.join("key"))?.trim())?
        .try_into()
        .map_err(|_| "key file must hold 32 bytes")?;
    let key = ArchiveKey::from_bytes(key_bytes);
    let id: [u8; 16] = unhex(fs::read_to_string(dir.join("archive-id"))?.trim())?
        .try_into()
        .map_err(|_| "archive-id must hold 16 bytes")?;
    // 16 MiB segments: opening the log re-reads and checks the active (unsealed) segment, so a
    // smaller one makes every command start faster; the indexes of sealed segments are cached
    // once searched (a restore looks up every block).
    let config = Config::new(id)
        .with_segment_target(SEGMENT_TARGET)?
        .with_index_cache(true);
    let store = ArchiveStore::open(DirStorage::open(dir.join("log"))?, config)?;
    let mut repo = Repository::new(store, &key, ArchiveId::from_bytes(id));
    if std::io::stderr().is_terminal() && std::env::var_os("CAIRN_QUIET").is_none() {
        repo = repo.with_progress(Arc::new(Bars::new()));
    }
    Ok(Repo {
        dir: dir.to_path_buf(),
        repo,
    })
}

fn init(dir: &Path) -> Result<()> {
    if dir.join("key").exists() {
        return Err(format!("{} is already a repository", dir.display()).into());
    }
    fs::create_dir_all(dir)?;
    let key = ArchiveKey::generate()?;
    let mut id = [0u8; 16];
    id.copy_from_slice(&key.fingerprint().as_bytes()[..16]);
    let key_path = dir.join("key");
    fs::write(&key_path, hex(key.expose_secret()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600))?;
    }
    fs::write(dir.join("archive-id"), hex(&id))?;
    println!(
        "initialised {} (archive key {})",
        dir.display(),
        key.fingerprint()
    );
    Ok(())
}

fn backup(dir: &Path, source: &Path) -> Result<()> {
    let r = open(dir)?;
    let cache = FileCache::open(&r.dir.join("cache.redb"))?;
    let snapshots = r.repo.snapshots()?;
    let parent = check_chain(&snapshots, read_head(&r.dir)?.as_ref())?.map(|(id, s)| (id, s));
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    let started = Instant::now();
    let s = r.repo.backup(
        &BackupOptions::new(&host, [source])
            .parent(parent)
            .cache(&cache),
    )?;
    let secs = started.elapsed().as_secs_f64();
    let id = s.snapshot.ok_or("no snapshot written")?;
    let seq = parent.map_or(0, |(_, p)| p.seq + 1);
    // Written to a temporary file and renamed, so a crash leaves the old head or the new one.
    let tmp = r.dir.join("head.tmp");
    fs::write(&tmp, format!("{}\n", ChainHead { seq, id }))?;
    fs::rename(&tmp, r.dir.join("head"))?;
    println!(
        "snapshot {id}: {} entries, {} unchanged files, {:.1} MiB read, {} blocks ({:.1} MiB) sent, {} skipped, {:.2} s",
        s.entries,
        s.files_unchanged,
        s.bytes_read as f64 / 1048576.0,
        s.blocks_sent,
        s.bytes_sent as f64 / 1048576.0,
        s.skipped,
        secs
    );
    Ok(())
}

fn snapshots(dir: &Path) -> Result<()> {
    let r = open(dir)?;
    for (id, s) in checked_snapshots(&r)? {
        println!("{:>4}  {id}  {}  {}", s.seq, s.host, s.paths.join(" "));
    }
    Ok(())
}

fn restore(dir: &Path, which: &str, target: &Path, path: &str) -> Result<()> {
    let r = open(dir)?;
    let snapshots = checked_snapshots(&r)?;
    let (_, snap) = if which == "latest" {
        snapshots.last().ok_or("no snapshots")?
    } else {
        let want: [u8; 32] = unhex(which)?
            .try_into()
            .map_err(|_| "snapshot ids are 32 bytes")?;
        let want = BlockId::from_bytes(want);
        snapshots
            .iter()
            .find(|(id, _)| *id == want)
            .ok_or("no such snapshot")?
    };
    let started = Instant::now();
    let summary = r.repo.restore_path(snap, path, target)?;
    println!(
        "restored {} entries to {} in {:.2} s",
        summary.entries,
        target.display(),
        started.elapsed().as_secs_f64()
    );
    if summary.xattrs_skipped > 0 {
        println!(
            "skipped {} extended attributes this user may not set (security., trusted., system.)",
            summary.xattrs_skipped
        );
    }
    Ok(())
}

fn check(dir: &Path, mode: DataCheck) -> Result<bool> {
    let r = open(dir)?;
    checked_snapshots(&r)?;
    let report = r.repo.check_data(mode)?;
    for e in &report.errors {
        println!("error: {e}");
    }
    println!(
        "{} snapshots, {} blocks, {} data blocks read, {} errors",
        report.snapshots,
        report.blocks,
        report.blocks_read,
        report.errors.len()
    );
    Ok(report.errors.is_empty())
}

/// `--read-data`, `--read-data-subset N/T` or neither.
fn check_mode(m: &clap::ArgMatches) -> Result<DataCheck> {
    if m.get_flag("read-data") {
        return Ok(DataCheck::All);
    }
    let Some(subset) = m.get_one::<String>("read-data-subset") else {
        return Ok(DataCheck::Presence);
    };
    let (n, of) = subset
        .split_once('/')
        .ok_or("--read-data-subset takes N/T, for example 1/5")?;
    Ok(DataCheck::Subset {
        n: n.parse()?,
        of: of.parse()?,
    })
}

fn main() -> ExitCode {
    let repo = || {
        Arg::new("repo")
            .required(true)
            .value_parser(clap::value_parser!(PathBuf))
    };
    let matches = Command::new("backup")
        .about("Cairn's local backup tool (a repository directory, no server)")
        .subcommand_required(true)
        .subcommand(
            Command::new("init")
                .about("create a repository")
                .arg(repo()),
        )
        .subcommand(
            Command::new("backup")
                .about("back up a directory")
                .arg(repo())
                .arg(
                    Arg::new("dir")
                        .required(true)
                        .value_parser(clap::value_parser!(PathBuf)),
                ),
        )
        .subcommand(
            Command::new("snapshots")
                .about("list snapshots")
                .arg(repo()),
        )
        .subcommand(
            Command::new("restore")
                .about("restore a snapshot into an empty or new directory")
                .arg(repo())
                .arg(Arg::new("snapshot").required(true))
                .arg(
                    Arg::new("target")
                        .required(true)
                        .value_parser(clap::value_parser!(PathBuf)),
                )
                .arg(
                    Arg::new("path")
                        .long("path")
                        .value_name("PATH")
                        .help("restore only this path of the snapshot (a/b/c)"),
                ),
        )
        .subcommand(
            Command::new("check")
                .about("check the repository")
                .arg(repo())
                .arg(
                    Arg::new("read-data")
                        .long("read-data")
                        .help("open every data block")
                        .action(ArgAction::SetTrue),
                )
                .arg(
                    Arg::new("read-data-subset")
                        .long("read-data-subset")
                        .value_name("N/T")
                        .help("open the N-th of T subsets of the data blocks")
                        .conflicts_with("read-data"),
                ),
        )
        .get_matches();
    let path =
        |m: &clap::ArgMatches, name: &str| m.get_one::<PathBuf>(name).cloned().unwrap_or_default();
    let result = match matches.subcommand() {
        Some(("init", m)) => init(&path(m, "repo")).map(|()| true),
        Some(("backup", m)) => backup(&path(m, "repo"), &path(m, "dir")).map(|()| true),
        Some(("snapshots", m)) => snapshots(&path(m, "repo")).map(|()| true),
        Some(("restore", m)) => restore(
            &path(m, "repo"),
            m.get_one::<String>("snapshot")
                .map_or("latest", String::as_str),
            &path(m, "target"),
            m.get_one::<String>("path").map_or("", String::as_str),
        )
        .map(|()| true),
        Some(("check", m)) => check_mode(m).and_then(|mode| check(&path(m, "repo"), mode)),
        _ => Ok(false),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
