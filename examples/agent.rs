//! Cairn's agent, the thin binary over `cairn-agent`.
//!
//! ```sh
//! agent enroll --dir DIR --server https://HOST:PORT --ca ca.pem --tenant T --device D --token TOKEN
//!     [--host NAME] [--mode standard|archive-password|custom-key]   (password: CAIRN_PASSWORD)
//! agent backup --dir DIR [FOLDER...]
//! agent run --dir DIR [FOLDER...] [--interval SECS] [--full-scan SECS]
//! agent snapshots --dir DIR
//! agent restore --dir DIR SNAPSHOT [PATH] --to OUT
//! agent check --dir DIR [--read-data]
//! agent status --dir DIR
//! ```
//!
//! Every command takes `--json` (one JSON object on stdout, for scripts) and `--quiet` (no
//! progress bars). Progress bars are drawn only on a terminal. Several folders go into one
//! snapshot, each at its absolute path. `run` watches the folders and backs up what changed
//! within the interval (the file cache makes unchanged files cost a `stat`, not a read), plus a
//! full scan every `--full-scan`, sending the events each backup makes; it stops, with the key
//! removed, if the device is deauthorized.

// A binary: printing is its job, and errors end it with a message and a non-zero exit code.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::agent::state::AgentDir;
use cairn::agent::{Agent, AgentError, BackupReport, Enrollment, Escrow, RunOptions};
use cairn::escrow::Password;
use clap::{Arg, ArgAction, ArgMatches, Command};

#[path = "support/bars.rs"]
mod bars;
use bars::Bars;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The folders named on the command line (none: the agent's own).
fn folders(m: &ArgMatches) -> Vec<PathBuf> {
    m.get_many::<PathBuf>("folder")
        .map(|v| v.cloned().collect())
        .unwrap_or_default()
}

fn cli() -> Command {
    let dir = Arg::new("dir")
        .long("dir")
        .required(true)
        .help("the agent's directory (key, credentials, state)");
    let json = Arg::new("json")
        .long("json")
        .action(ArgAction::SetTrue)
        .global(true)
        .help("print one JSON object");
    let quiet = Arg::new("quiet")
        .long("quiet")
        .short('q')
        .action(ArgAction::SetTrue)
        .global(true)
        .help("no progress bars");
    let opt = |name: &'static str, help: &'static str| Arg::new(name).long(name).help(help);
    let folders_arg = Arg::new("folder")
        .num_args(0..)
        .value_parser(clap::value_parser!(PathBuf))
        .help("the folders, in one snapshot (remembered after the first backup; none: those)");
    Command::new("agent")
        .about("Cairn's endpoint agent: encrypted backup to a Cairn server, restore, events")
        .arg(json)
        .arg(quiet)
        .subcommand_required(true)
        .subcommand(
            Command::new("enroll")
                .about("enroll this endpoint with a server (generates the archive key here)")
                .arg(dir.clone())
                .arg(opt("server", "https://HOST:PORT").required(true))
                .arg(opt("ca", "the server's CA certificate to pin (PEM file)").required(true))
                .arg(opt("tenant", "tenant id").required(true))
                .arg(opt("device", "device id from the administrator").required(true))
                .arg(opt("token", "the one-use enrollment token").required(true))
                .arg(opt("host", "host name recorded in snapshots"))
                .arg(
                    opt("mode", "standard | archive-password | custom-key")
                        .default_value("standard"),
                ),
        )
        .subcommand(
            Command::new("backup")
                .about("back up the folders once")
                .arg(dir.clone())
                .arg(folders_arg.clone()),
        )
        .subcommand(
            Command::new("run")
                .about("back up continuously and send events")
                .arg(dir.clone())
                .arg(folders_arg)
                .arg(
                    opt("interval", "a change is backed up within this many seconds")
                        .default_value("60"),
                )
                .arg(
                    opt(
                        "full-scan",
                        "a backup at least this often (seconds), changes or not",
                    )
                    .default_value("3600"),
                ),
        )
        .subcommand(
            Command::new("snapshots")
                .about("list snapshots")
                .arg(dir.clone()),
        )
        .subcommand(
            Command::new("restore")
                .about("restore a snapshot (an id, a unique prefix, or `latest`)")
                .arg(dir.clone())
                .arg(Arg::new("snapshot").required(true))
                .arg(Arg::new("path").help("only this path inside the snapshot"))
                .arg(opt("to", "an empty or new folder").required(true)),
        )
        .subcommand(
            Command::new("check")
                .about("check every snapshot's structure (and with --read-data every block)")
                .arg(dir.clone())
                .arg(
                    Arg::new("read-data")
                        .long("read-data")
                        .action(ArgAction::SetTrue),
                ),
        )
        .subcommand(
            Command::new("status")
                .about("configuration, chain head, event spool")
                .arg(dir),
        )
}

fn get<'a>(m: &'a ArgMatches, name: &str) -> Option<&'a str> {
    m.get_one::<String>(name).map(String::as_str)
}

fn password() -> Result<Password> {
    let p = std::env::var("CAIRN_PASSWORD")
        .map_err(|_| "this mode needs a password: set CAIRN_PASSWORD")?;
    Ok(Password::new(p.into_bytes()))
}

fn open(m: &ArgMatches, bars: bool) -> Result<Agent> {
    let dir = AgentDir::at(get(m, "dir").unwrap_or_default());
    let agent = Agent::open(&dir)?;
    Ok(if bars {
        agent.with_progress(Arc::new(Bars::new()))
    } else {
        agent
    })
}

fn print_backup(r: &BackupReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
        return;
    }
    let s = &r.summary;
    println!(
        "snapshot {} (#{}) of {}: {} entries, {} bytes read ({} files unchanged, not read), \
         {} blocks / {} bytes sent in {} requests, {:.1} s",
        &r.snapshot[..16],
        r.seq,
        r.folders
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        s.entries,
        s.bytes_read,
        s.files_unchanged,
        s.blocks_sent,
        r.bytes_up,
        r.requests,
        r.seconds
    );
    println!(
        "changes: {} added, {} modified, {} attributes, {} removed; events: {} queued, {} sent",
        r.changes[0], r.changes[1], r.changes[2], r.changes[3], r.events_queued, r.events_sent
    );
    // Everything the backup could not record as it found it, on stderr (special files left
    // out are noted, not warnings).
    for w in &r.warnings {
        let label = if w.kind == "special-file" {
            "note"
        } else {
            "warning"
        };
        eprintln!("{label}: {}: {} ({})", w.path, w.kind, w.detail);
    }
    if r.completed_with_warnings {
        eprintln!(
            "completed with warnings: the snapshot was written without the entries above (exit {})",
            exit::WARNINGS
        );
    }
}

/// Runs the command: its exit status when it did its work (0, or [`exit::WARNINGS`]).
fn run() -> Result<u8> {
    let mut status = 0;
    let m = cli().get_matches();
    let json = m.get_flag("json");
    let bars = !m.get_flag("quiet") && !json && std::io::stderr().is_terminal();
    match m.subcommand() {
        Some(("enroll", s)) => {
            let ca = cairn::agent::tls::read_ca(get(s, "ca").unwrap_or_default().as_ref())?;
            let escrow = match get(s, "mode").unwrap_or("standard") {
                "standard" => Escrow::Standard,
                "archive-password" => Escrow::ArchivePassword(password()?),
                "custom-key" => Escrow::CustomKey(password()?),
                other => return Err(format!("unknown mode {other}").into()),
            };
            let host = get(s, "host").map_or_else(
                || {
                    std::env::var("HOSTNAME")
                        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
                        .map(|h| h.trim().to_owned())
                        .unwrap_or_else(|_| "endpoint".to_owned())
                },
                str::to_owned,
            );
            let dir = AgentDir::at(get(s, "dir").unwrap_or_default());
            let agent = Agent::enroll(
                &dir,
                Enrollment {
                    server: get(s, "server").unwrap_or_default(),
                    ca_pem: &ca,
                    tenant: get(s, "tenant").unwrap_or_default(),
                    device: get(s, "device").unwrap_or_default(),
                    token: get(s, "token").unwrap_or_default(),
                    host: &host,
                    escrow,
                },
            )?;
            let c = agent.config();
            if json {
                println!("{}", serde_json::to_string(c)?);
            } else {
                println!(
                    "enrolled device {} of {}/{} with {} ({} mode); key in {}",
                    c.device,
                    c.tenant,
                    c.user,
                    c.server,
                    c.mode,
                    dir.root().display()
                );
            }
        }
        Some(("backup", s)) => {
            let mut agent = open(s, bars)?;
            let report = agent.backup_folders(&folders(s))?;
            print_backup(&report, json);
            if report.completed_with_warnings {
                status = exit::WARNINGS;
            }
        }
        Some(("run", s)) => {
            let mut agent = open(s, bars)?;
            let secs = |name: &str, default: &str| -> Result<Duration> {
                Ok(Duration::from_secs(
                    get(s, name).unwrap_or(default).parse()?,
                ))
            };
            let opts = RunOptions {
                interval: secs("interval", "60")?,
                full_scan: secs("full-scan", "3600")?,
                ..RunOptions::default()
            };
            // Runs until Ctrl-C or SIGTERM (a service manager's stop): a backup under way
            // finishes first.
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            {
                let stop = Arc::clone(&stop);
                let signals = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                std::thread::spawn(move || {
                    signals.block_on(stopped());
                    eprintln!("stopping after the current backup");
                    stop.store(true, std::sync::atomic::Ordering::SeqCst);
                });
            }
            agent.run(&folders(s), &opts, &stop, |r| match r {
                Ok(report) => print_backup(report, json),
                Err(e) => eprintln!("backup failed, retrying: {e}"),
            })?;
        }
        Some(("snapshots", s)) => {
            let agent = open(s, false)?;
            let list = agent.snapshots()?;
            if json {
                let out: Vec<_> = list
                    .iter()
                    .map(|(id, s)| {
                        serde_json::json!({
                            "id": id.to_string(), "seq": s.seq, "time_ns": s.time_ns,
                            "host": s.host, "paths": s.paths,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(out));
            } else {
                for (id, s) in &list {
                    let secs = s.time_ns / 1_000_000_000;
                    println!(
                        "{}  #{:<4} {}  {}  {}",
                        &id.to_string()[..16],
                        s.seq,
                        time::OffsetDateTime::from_unix_timestamp(secs)
                            .ok()
                            .and_then(|t| t
                                .format(&time::format_description::well_known::Rfc3339)
                                .ok())
                            .unwrap_or_else(|| secs.to_string()),
                        s.host,
                        s.paths.join(" ")
                    );
                }
            }
        }
        Some(("restore", s)) => {
            let agent = open(s, bars)?;
            let to = PathBuf::from(get(s, "to").unwrap_or_default());
            let started = Instant::now();
            let r = agent.restore(get(s, "snapshot").unwrap_or("latest"), get(s, "path"), &to)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"entries": r.entries, "xattrs_skipped": r.xattrs_skipped})
                );
            } else {
                println!(
                    "restored {} entries into {} in {:.1} s",
                    r.entries,
                    to.display(),
                    started.elapsed().as_secs_f64()
                );
            }
        }
        Some(("check", s)) => {
            let agent = open(s, bars)?;
            let r = agent.check(s.get_flag("read-data"))?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"snapshots": r.snapshots, "blocks": r.blocks,
                        "blocks_read": r.blocks_read, "errors": r.errors,
                        "foreign_snapshots": r.foreign_snapshots})
                );
            } else {
                println!(
                    "{} snapshots, {} blocks, {} data blocks read: {}",
                    r.snapshots,
                    r.blocks,
                    r.blocks_read,
                    if r.errors.is_empty() {
                        "no problem found".to_owned()
                    } else {
                        format!("{} problems", r.errors.len())
                    }
                );
                if r.foreign_snapshots > 0 {
                    println!(
                        "  {} snapshots of other devices of this user (or damaged) skipped",
                        r.foreign_snapshots
                    );
                }
                for e in &r.errors {
                    println!("  {e}");
                }
            }
            if !r.errors.is_empty() {
                return Err("check found problems".into());
            }
        }
        Some(("status", s)) => {
            let agent = open(s, false)?;
            let st = agent.status()?;
            if json {
                println!("{}", serde_json::to_string(&st)?);
            } else {
                let c = &st.config;
                println!(
                    "device  {} of {}/{} at {}",
                    c.device, c.tenant, c.user, c.server
                );
                println!("mode    {} (escrow deposited: {})", c.mode, c.escrowed);
                let folders: Vec<String> = c
                    .folders()
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect();
                println!(
                    "folders {}",
                    if folders.is_empty() {
                        "(none yet)".to_owned()
                    } else {
                        folders.join(", ")
                    }
                );
                println!(
                    "head    {}",
                    st.head.as_deref().unwrap_or("(no backup yet)")
                );
                println!(
                    "events  {} batches ({} bytes) waiting; dropped: {} (spool full), {} (refused)",
                    st.spool.batches,
                    st.spool.bytes,
                    st.spool.dropped_full,
                    st.spool.dropped_refused
                );
                println!(
                    "seen    {} changed paths waiting for the next backup; not recorded: {}",
                    st.spool.observed, st.spool.dropped_observed
                );
            }
        }
        _ => unreachable!("clap requires a subcommand"),
    }
    Ok(status)
}

/// Ctrl-C, or SIGTERM on Unix.
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Exit codes (`docs/format/agent.md`, §7): 0 done, 1 failed, 2 usage (clap's), 3 a backup
/// completed with warnings (its snapshot was written without entries it could not read, or with
/// a file that kept changing), 4 the server's history of the archive cannot be trusted (shorter
/// than or different from this agent's chain head).
mod exit {
    pub(crate) const FAILED: u8 = 1;
    pub(crate) const WARNINGS: u8 = 3;
    pub(crate) const HISTORY: u8 = 4;
}

fn main() -> ExitCode {
    match run() {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            eprintln!("agent: {e}");
            match e.downcast_ref::<AgentError>() {
                Some(AgentError::History(_)) => {
                    eprintln!(
                        "agent: nothing was read or written; the server's operator must look at this archive \
                         (its data may have been cut, deleted, or put back from an older copy)"
                    );
                    ExitCode::from(exit::HISTORY)
                }
                _ => ExitCode::from(exit::FAILED),
            }
        }
    }
}
