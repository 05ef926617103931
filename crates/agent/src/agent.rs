//! The agent: enrollment, backup, restore, check and status over one device's credentials.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_backup::{
    BackupOptions, BackupSummary, ChainHead, ChangeKind, CheckReport, FileCache, Progress,
    Repository, RestoreSummary, Snapshot, check_chain,
};
use cairn_escrow::{
    Argon2Params, Envelope, EscrowPublicKey, EscrowRecipient, Header, Mode, Password,
    PasswordEscrowRecipient, PasswordRecipient, Recipient,
};
use cairn_events::v1;
use cairn_keys::ArchiveKey;
use cairn_seal::{ArchiveId, BlockId};
use reqwest::Method;
use zeroize::Zeroizing;

use crate::AgentError;
use crate::client::{self, Body, Client};
use crate::events;
use crate::remote::{RemoteStore, Traffic};
use crate::spool::{DEFAULT_MAX_BYTES, Spool, SpoolStats};
use crate::state::{AgentDir, CONFIG_FORMAT, Config, names};
use crate::watch::Watch;

/// How the archive key is protected on the server (the tenant's security mode).
pub enum Escrow {
    /// Wrapped to the server's escrow key: an administrator can recover it.
    Standard,
    /// Wrapped to the escrow key under the user's password: recovery needs both.
    ArchivePassword(Password),
    /// Never escrowed: only this password (and this device's key file) can recover it.
    CustomKey(Password),
}

impl Escrow {
    fn name(&self) -> &'static str {
        match self {
            Escrow::Standard => "standard",
            Escrow::ArchivePassword(_) => "archive-password",
            Escrow::CustomKey(_) => "custom-key",
        }
    }
}

impl std::fmt::Debug for Escrow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What `enroll` needs.
#[derive(Debug)]
pub struct Enrollment<'a> {
    /// The server, `https://host:port`.
    pub server: &'a str,
    /// The CA to pin (PEM), from the server's operator.
    pub ca_pem: &'a [u8],
    /// The tenant.
    pub tenant: &'a str,
    /// The device id the administrator registered.
    pub device: &'a str,
    /// The one-use enrollment token.
    pub token: &'a str,
    /// The host name to record in snapshots.
    pub host: &'a str,
    /// The security mode.
    pub escrow: Escrow,
}

/// What one backup did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BackupReport {
    /// The folders backed up (one, or several in one snapshot).
    pub folders: Vec<PathBuf>,
    /// The new snapshot.
    pub snapshot: String,
    /// Its position in this device's chain.
    pub seq: u64,
    /// What the engine did.
    #[serde(skip)]
    pub summary: BackupSummary,
    /// Entries added, modified, changed in attributes, removed since the previous snapshot.
    pub changes: [u64; 4],
    /// Events queued for the server (one per change).
    pub events_queued: u64,
    /// Events delivered during this run (queued earlier ones included).
    pub events_sent: u64,
    /// Requests made to the server.
    pub requests: u64,
    /// Bytes uploaded (request bodies).
    pub bytes_up: u64,
    /// How long the backup took, events included, in seconds.
    pub seconds: f64,
    /// Whether it completed with warnings: an entry could not be read (it is not in the
    /// snapshot) or a file kept changing while it was read (`agent backup` exits 3).
    pub completed_with_warnings: bool,
    /// Every entry the backup could not record as it found it, special files left out
    /// included (the snapshot record keeps the first 1,000).
    pub warnings: Vec<WarningReport>,
}

/// One warning of a backup, as `--json` prints it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WarningReport {
    /// `unreadable`, `changed-while-read`, `special-file` or `other`.
    pub kind: &'static str,
    /// The entry's path (lossily UTF-8).
    pub path: String,
    /// The cause.
    pub detail: String,
}

impl From<&cairn_backup::Warning> for WarningReport {
    fn from(w: &cairn_backup::Warning) -> Self {
        Self {
            kind: w.kind.name(),
            path: w.path.to_string_lossy().into_owned(),
            detail: w.detail.clone(),
        }
    }
}

/// How [`Agent::run`] paces itself.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// A change is backed up at most this long after it is seen, and backups are at least this
    /// far apart.
    pub interval: Duration,
    /// A backup runs at least this often even when the watcher saw nothing (the full scan).
    pub full_scan: Duration,
    /// Quiet time after a path's last change before the watcher reports it.
    pub debounce: Duration,
    /// How often the loop looks at its stop flag.
    pub tick: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            full_scan: Duration::from_secs(3600),
            debounce: Duration::from_secs(2),
            tick: Duration::from_millis(500),
        }
    }
}

/// What `status` shows.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Status {
    /// The configuration.
    pub config: Config,
    /// The chain head (`SEQ ID`), if a backup was made.
    pub head: Option<String>,
    /// The event spool.
    pub spool: SpoolStats,
}

fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

fn runtime() -> Result<tokio::runtime::Runtime, AgentError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("cairn-agent-io")
        .enable_all()
        .build()
        .map_err(|e| AgentError::io("tokio runtime", e))
}

fn device_bytes(device: &str) -> Result<Vec<u8>, AgentError> {
    let bytes = hex::decode(device)
        .ok()
        .filter(|b| b.len() == 16)
        .ok_or_else(|| AgentError::State(format!("device id {device:?} is not 32 hex digits")))?;
    Ok(bytes)
}

/// The watcher's observations waiting in an agent's spool ([`Agent::observations`]).
#[derive(Clone)]
pub struct Observations(Arc<Spool>);

impl std::fmt::Debug for Observations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observations").finish_non_exhaustive()
    }
}

impl Observations {
    /// The paths the watcher saw change that no backup has turned into events yet, with the
    /// first and last time each was seen (Unix ns).
    ///
    /// # Errors
    /// [`AgentError::Db`].
    pub fn waiting(&self) -> Result<HashMap<PathBuf, (i64, i64)>, AgentError> {
        self.0.observed()
    }
}

/// An enrolled agent.
pub struct Agent {
    dir: AgentDir,
    config: Config,
    client: Arc<Client>,
    repo: Repository<RemoteStore>,
    traffic: Arc<Traffic>,
    archive: ArchiveId,
    spool: Arc<Spool>,
    // Last: dropped after everything that holds a handle to it.
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Enrolls this endpoint: exchanges the enrollment token for the device's credentials,
    /// generates the archive key here, writes the agent directory (key and secret readable by
    /// this user only), and deposits the escrow envelope the mode calls for.
    ///
    /// # Errors
    /// [`AgentError`]. If the deposit fails after the credentials were written, the agent is
    /// enrolled and deposits before its first backup.
    pub fn enroll(dir: &AgentDir, req: Enrollment<'_>) -> Result<Self, AgentError> {
        if dir.path(names::CONFIG).exists() {
            return Err(AgentError::Usage(format!(
                "{} already holds an enrolled agent",
                dir.root().display()
            )));
        }
        let server = &client::server_url(req.server)?;
        let runtime = runtime()?;
        let http = client::http_client(req.ca_pem)?;
        let enrolled = runtime.block_on(client::enroll(
            &http, server, req.tenant, req.device, req.token,
        ))?;
        let mut secret = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(enrolled.secret.as_bytes(), &mut *secret)
            .map_err(|_| AgentError::State("enrollment answer: malformed secret".into()))?;
        let escrow_key = hex::decode(&enrolled.escrow_public_key)
            .map_err(|_| AgentError::State("enrollment answer: malformed escrow key".into()))
            .and_then(|b| EscrowPublicKey::from_bytes(&b).map_err(AgentError::from))?;
        let key = ArchiveKey::generate()?;
        let mut archive = [0u8; 16];
        getrandom::fill(&mut archive).map_err(|e| AgentError::State(format!("random: {e}")))?;
        let archive = ArchiveId::from_bytes(archive);
        let config = Config {
            format: CONFIG_FORMAT,
            server: server.to_owned(),
            tenant: req.tenant.to_owned(),
            user: enrolled.user.clone(),
            device: enrolled.device.clone(),
            host: req.host.to_owned(),
            mode: req.escrow.name().to_owned(),
            escrowed: false,
            folder: None,
            folders: Vec::new(),
            exposure: events::default_rules(std::env::home_dir().as_deref()),
        };
        let envelope = envelope(&key, &config, &escrow_key, req.escrow)?;
        dir.create(&config, req.ca_pem, &key, &archive, &secret)?;
        dir.write_envelope(&envelope.to_bytes())?;
        let client = Client::new(http, server, req.tenant, &enrolled.device, secret)
            .with_token(enrolled.token);
        let mut agent = Self::assemble(dir.clone(), config, client, key, archive, runtime)?;
        agent.deposit()?;
        Ok(agent)
    }

    /// Opens an enrolled agent's directory.
    ///
    /// # Errors
    /// [`AgentError::Deauthorized`] after a deauthorization; [`AgentError::State`] for a
    /// missing, foreign or unsafe file (a key file others can read).
    pub fn open(dir: &AgentDir) -> Result<Self, AgentError> {
        let config = dir.config()?;
        // A configuration edited to a plain-HTTP server is refused before any request.
        client::server_url(&config.server)?;
        events::check_rules(&config.exposure)?;
        let (key, archive) = dir.key()?;
        let secret = dir.secret()?;
        let http = client::http_client(&dir.ca()?)?;
        let client = Client::new(http, &config.server, &config.tenant, &config.device, secret);
        Self::assemble(dir.clone(), config, client, key, archive, runtime()?)
    }

    fn assemble(
        dir: AgentDir,
        config: Config,
        client: Client,
        key: ArchiveKey,
        archive: ArchiveId,
        runtime: tokio::runtime::Runtime,
    ) -> Result<Self, AgentError> {
        let client = Arc::new(client);
        let store = RemoteStore::new(Arc::clone(&client), runtime.handle().clone(), &config.user);
        let traffic = store.traffic();
        let repo = Repository::new(store, &key, archive)
            .with_content_hashes(true)
            .with_foreign_snapshots_skipped(true);
        let spool = Arc::new(Spool::open(
            &dir.path(names::SPOOL),
            &device_bytes(&config.device)?,
            DEFAULT_MAX_BYTES,
        )?);
        Ok(Self {
            dir,
            config,
            client,
            repo,
            traffic,
            archive,
            spool,
            runtime,
        })
    }

    /// Reports the engine's progress (backup, restore, check) to `progress`.
    #[must_use]
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.repo = self.repo.with_progress(progress);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Requests made to the storage API so far, and the body bytes sent and received.
    pub fn traffic(&self) -> (u64, u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.traffic.requests.load(Relaxed),
            self.traffic.bytes_up.load(Relaxed),
            self.traffic.bytes_down.load(Relaxed),
        )
    }

    /// The archive id.
    pub fn archive(&self) -> ArchiveId {
        self.archive
    }

    /// After a failure: if the server said the device is deauthorized, wipe the key and
    /// state and say so.
    fn guard<T>(&self, result: Result<T, AgentError>) -> Result<T, AgentError> {
        match result {
            Err(_) | Ok(_) if self.client.is_deauthorized() => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                self.dir.wipe(now)?;
                tracing::warn!("device deauthorized: key and state removed");
                Err(AgentError::Deauthorized)
            }
            other => other,
        }
    }

    /// Deposits the escrow envelope if it has not been accepted yet.
    fn deposit(&mut self) -> Result<(), AgentError> {
        if self.config.escrowed {
            return Ok(());
        }
        let envelope = self.dir.envelope()?;
        let path = format!("/users/{}/escrow", self.config.user);
        let body = Body {
            bytes: envelope.into(),
            media_type: "application/octet-stream",
        };
        let done = self
            .runtime
            .block_on(self.client.call(Method::PUT, &path, Some(body)));
        self.guard(done)?;
        self.config.escrowed = true;
        self.dir.save_config(&self.config)
    }

    /// The snapshots this key made, oldest first, checked against the chain head this agent
    /// trusts (B-8): every command that reads the archive (`snapshots`, `restore`, `check`)
    /// goes through here, so none of them reads a history that the server shortened (a cut,
    /// a deleted or withheld snapshot, an older copy of its data put back) or replaced.
    ///
    /// # Errors
    /// [`AgentError::History`] when the server's history is shorter than, or different from,
    /// what this agent wrote; [`AgentError`] otherwise.
    pub fn snapshots(&self) -> Result<Vec<(BlockId, Snapshot)>, AgentError> {
        let listed = self.guard(self.repo.snapshots().map_err(AgentError::from))?;
        let head = self.dir.head()?;
        check_chain(&listed, head.as_ref()).map_err(AgentError::history)?;
        Ok(listed)
    }

    /// Backs up `folder` (or the folders of earlier backups) as a new snapshot, queues one
    /// event per change since the previous snapshot (each linked to the new snapshot) and sends
    /// the queued events. Must not be called from an async runtime's thread.
    ///
    /// # Errors
    /// [`AgentError::Usage`] for a folder other than those of earlier backups;
    /// [`AgentError::History`] (a rolled-back or forked server, B-8); [`AgentError::Backup`];
    /// [`AgentError::Deauthorized`].
    pub fn backup(&mut self, folder: Option<&Path>) -> Result<BackupReport, AgentError> {
        let folders: Vec<PathBuf> = folder.map(Path::to_path_buf).into_iter().collect();
        self.backup_folders(&folders)
    }

    /// [`Agent::backup`] of several folders in one snapshot (each at its absolute path; see
    /// `cairn_backup::BackupOptions::new`); none means the folders of earlier backups.
    /// The set of folders is fixed by the first backup.
    ///
    /// # Errors
    /// As [`Agent::backup`]; [`AgentError::Usage`] also for folders inside one another.
    pub fn backup_folders(&mut self, folders: &[PathBuf]) -> Result<BackupReport, AgentError> {
        let folders = self.resolve_folders(folders)?;
        self.deposit()?;
        let result = self.backup_once(&folders);
        let report = self.guard(result)?;
        if self.config.folders() != folders {
            self.config.set_folders(&folders);
            self.dir.save_config(&self.config)?;
        }
        Ok(report)
    }

    /// The folders to back up: `folders` if given (made absolute; they must be those of earlier
    /// backups, if any), else those of earlier backups. Refuses a folder that holds the agent's
    /// own directory (its key would be backed up, and its state would change under every
    /// backup), and folders inside one another.
    fn resolve_folders(&self, folders: &[PathBuf]) -> Result<Vec<PathBuf>, AgentError> {
        let known = self.config.folders();
        let given = folders
            .iter()
            .map(|f| std::path::absolute(f).map_err(|e| AgentError::io(f, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let folders = match (given.is_empty(), known.is_empty()) {
            (true, true) => {
                return Err(AgentError::Usage(
                    "no folder: name the folder to back up".into(),
                ));
            }
            (true, false) => known,
            (false, false) if !same_set(&given, &known) => {
                let known: Vec<String> = known.iter().map(|k| k.display().to_string()).collect();
                return Err(AgentError::Usage(format!(
                    "this agent backs up {}; its folders are fixed by its first backup",
                    known.join(", ")
                )));
            }
            (false, _) => given,
        };
        let own =
            std::path::absolute(self.dir.root()).map_err(|e| AgentError::io(self.dir.root(), e))?;
        for (i, folder) in folders.iter().enumerate() {
            if own.starts_with(folder) {
                return Err(AgentError::Usage(format!(
                    "the agent's directory {} is inside {}: keep it outside the folders it backs up",
                    own.display(),
                    folder.display()
                )));
            }
            if let Some(other) = folders[i + 1..]
                .iter()
                .find(|o| o.starts_with(folder) || folder.starts_with(o))
            {
                return Err(AgentError::Usage(format!(
                    "{} and {} repeat or nest: name the outer one",
                    folder.display(),
                    other.display()
                )));
            }
        }
        Ok(folders)
    }

    /// Backs up continuously until `stop` is set: a first backup at once, then one at most
    /// `interval` after the watcher sees a change (or the OS reports lost events), and one
    /// every `full_scan` even when nothing was seen. Each backup, or failure, is passed to
    /// `report`. A failure that retrying can fix (the server unreachable) is retried at the next
    /// interval; events stay spooled meanwhile.
    ///
    /// # Errors
    /// [`AgentError::Deauthorized`] (the key and state are gone), [`AgentError::Usage`] or
    /// [`AgentError::State`] (retrying cannot help), or the watcher's failure to start.
    pub fn run(
        &mut self,
        folders: &[PathBuf],
        opts: &RunOptions,
        stop: &AtomicBool,
        mut report: impl FnMut(Result<&BackupReport, &AgentError>),
    ) -> Result<(), AgentError> {
        let folders = self.resolve_folders(folders)?;
        let ignore = vec![self.dir.root().to_path_buf()];
        let roots: Vec<&Path> = folders.iter().map(PathBuf::as_path).collect();
        let watch = Watch::start_roots(&roots, opts.debounce, ignore.clone())?;
        // Exposure destinations outside the folders (a removable disk, a share, a sync folder):
        // watched for copies leaving them. One that cannot be watched is logged, not fatal: the
        // backup is the agent's first job. A disk mounted below a destination later is a new
        // file system the running watch does not see: the mounts below the destinations are
        // checked every few seconds, and the watch restarts when they change.
        let destinations = self.destinations(&folders);
        let watch_outside = |mounts: &[PathBuf]| {
            if destinations.is_empty() {
                return None;
            }
            if !mounts.is_empty() {
                tracing::info!(mounts = mounts.len(), "watching exposure destinations");
            }
            let roots: Vec<&Path> = destinations.iter().map(PathBuf::as_path).collect();
            Watch::start_roots(&roots, opts.debounce, ignore.clone())
                .inspect_err(|e| tracing::warn!(error = %e, "not watching exposure destinations"))
                .ok()
        };
        let mut mounts = mounts_below(&destinations);
        let mut outside = watch_outside(&mounts);
        let mut mounts_checked = Instant::now();
        let mut pending = true;
        let mut last: Option<Instant> = None;
        while !stop.load(Ordering::SeqCst) {
            let due = last.is_none_or(|t| {
                (pending && t.elapsed() >= opts.interval) || t.elapsed() >= opts.full_scan
            });
            if due {
                last = Some(Instant::now());
                match self.backup_folders(&folders) {
                    Ok(r) => {
                        pending = false;
                        report(Ok(&r));
                    }
                    Err(
                        e
                        @ (AgentError::Deauthorized | AgentError::Usage(_) | AgentError::State(_)),
                    ) => {
                        return Err(e);
                    }
                    Err(e) => {
                        pending = true;
                        report(Err(&e));
                    }
                }
            }
            let seen = watch.wait(opts.tick);
            for e in &seen.errors {
                tracing::warn!(error = %e, "watcher; rescanning");
            }
            // Durable before anything else: activity seen while the server is unreachable
            // keeps its time across restarts, and the next backup's events carry it.
            if let Err(e) = self.spool.observe(&seen.paths) {
                tracing::warn!(error = %e, "recording what the watcher saw");
            }
            if let Some(outside) = &outside {
                let seen = outside.wait(Duration::ZERO);
                if !seen.paths.is_empty() {
                    self.report_outside(&seen.paths, &seen.created)?;
                }
            }
            if !destinations.is_empty() && mounts_checked.elapsed() >= MOUNT_CHECK {
                mounts_checked = Instant::now();
                let now = mounts_below(&destinations);
                if now != mounts {
                    // The old watch stops before the new one starts.
                    drop(outside.take());
                    outside = watch_outside(&now);
                    mounts = now;
                }
            }
            if seen.any() {
                pending = true;
            }
        }
        Ok(())
    }

    /// The exposure rules' prefixes that are folders outside the backed-up `folders` (and
    /// contain none of them, nor the agent's own directory): where `run` watches for copies
    /// leaving them.
    fn destinations(&self, folders: &[PathBuf]) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self
            .config
            .exposure
            .iter()
            .map(|r| r.prefix.clone())
            .filter(|p| {
                p.is_dir()
                    && !folders.iter().any(|f| p.starts_with(f) || f.starts_with(p))
                    && !self.dir.root().starts_with(p)
            })
            .collect();
        out.sort();
        out.dedup();
        // A prefix inside another is watched through it.
        let all = out.clone();
        out.retain(|p| !all.iter().any(|q| q != p && p.starts_with(q)));
        out
    }

    /// Queues the events of what the destinations' watcher saw, and sends what it can.
    fn report_outside(
        &self,
        changed: &[(PathBuf, i64)],
        created: &[PathBuf],
    ) -> Result<(), AgentError> {
        let events = events::outside_events(&self.config.exposure, changed, created)?;
        if events.is_empty() {
            return Ok(());
        }
        self.spool.push(events)?;
        self.send_what_can_be_sent().map(|_| ())
    }

    /// [`Agent::send_events`], where failing to reach the server is not an error: the events
    /// stay spooled (and the failure is logged). Deauthorization still is.
    fn send_what_can_be_sent(&self) -> Result<u64, AgentError> {
        match self.send_events() {
            Err(AgentError::Deauthorized) => Err(AgentError::Deauthorized),
            Err(e) => {
                tracing::warn!(error = %e, "events kept in the spool for later");
                Ok(0)
            }
            Ok(n) => Ok(n),
        }
    }

    fn backup_once(&self, folders: &[PathBuf]) -> Result<BackupReport, AgentError> {
        // Paths in the snapshot are relative to the one folder, or to `/` for several.
        let folder = match folders {
            [one] => one.as_path(),
            _ => Path::new("/"),
        };
        let started = Instant::now();
        // Observations up to here are covered by this backup's scan.
        let started_ns = unix_nanos();
        let observed = self.spool.observed()?;
        let (requests, bytes_up, _) = self.traffic();
        let snapshots = self.repo.snapshots()?;
        let head = self.dir.head()?;
        let parent = check_chain(&snapshots, head.as_ref()).map_err(AgentError::history)?;
        let cache = FileCache::open(&self.dir.path(names::FILES))?;
        let summary = self.repo.backup(
            &BackupOptions::new(&self.config.host, folders)
                .parent(parent.map(|(id, s)| (id, s)))
                .cache(&cache),
        )?;
        let (Some(id), Some(snapshot)) = (summary.snapshot, summary.record.clone()) else {
            return Err(AgentError::State("the engine made no snapshot".into()));
        };
        self.dir.set_head(&ChainHead {
            seq: snapshot.seq,
            id,
        })?;
        let changes = self.repo.diff(parent.map(|(_, s)| s), &snapshot)?;
        let mut counts = [0u64; 4];
        for c in &changes {
            counts[match c.kind {
                ChangeKind::Added => 0,
                ChangeKind::Modified => 1,
                ChangeKind::Attributes => 2,
                ChangeKind::Removed => 3,
            }] += 1;
        }
        let hashes: HashMap<PathBuf, cairn_backup::ContentHash> =
            summary.content_hashes.iter().cloned().collect();
        // The backup's start is the events' time unless the watcher saw the change earlier,
        // and bounds the observations they use (later ones are the next backup's).
        let ctx = events::Context {
            folder,
            archive: self.archive,
            snapshot: id,
            seq: snapshot.seq,
            hashes: &hashes,
            rules: &self.config.exposure,
            observed: &observed,
            now: started_ns,
        };
        let (mut events, skipped) = events::from_changes(&ctx, &changes)?;
        if skipped > 0 {
            tracing::warn!(
                skipped,
                "events with paths longer than the schema allows were skipped"
            );
        }
        let brief = {
            let reported: std::collections::HashSet<&str> = events
                .iter()
                .filter_map(|e| e.file.as_ref())
                .flat_map(|f| [f.path.as_str(), f.previous_path.as_str()])
                .collect();
            events::transient(&ctx, &reported, |p| p.symlink_metadata().is_ok())?
        };
        events.extend(brief);
        let queued = events.len() as u64;
        self.spool.push_observed(events, started_ns)?;
        // Events that cannot be sent now stay queued; the backup itself succeeded.
        let sent = self.send_what_can_be_sent()?;
        for w in &summary.warnings {
            if w.kind.is_warning() {
                tracing::warn!(path = %w.path.display(), kind = w.kind.name(), detail = %w.detail, "not backed up as found");
            } else {
                tracing::info!(path = %w.path.display(), detail = %w.detail, "left out");
            }
        }
        Ok(BackupReport {
            folders: folders.to_vec(),
            snapshot: id.to_string(),
            seq: snapshot.seq,
            completed_with_warnings: summary.completed_with_warnings(),
            warnings: summary.warnings.iter().map(WarningReport::from).collect(),
            summary,
            changes: counts,
            events_queued: queued,
            events_sent: sent,
            requests: self.traffic().0 - requests,
            bytes_up: self.traffic().1 - bytes_up,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Queues events in the spool (durable when this returns); [`Agent::send_events`] delivers
    /// them.
    ///
    /// # Errors
    /// [`AgentError::Db`].
    pub fn queue_events(&self, events: Vec<v1::FileEvent>) -> Result<(), AgentError> {
        self.spool.push(events)
    }

    /// Sends the spooled event batches, oldest first, until the spool is empty or the server
    /// cannot be reached; returns the events delivered. A batch the server refuses as malformed
    /// (400, 413, 422) is dropped and counted, so that it cannot block the others.
    ///
    /// # Errors
    /// [`AgentError`] when the server cannot be reached (the batches stay queued).
    pub fn send_events(&self) -> Result<u64, AgentError> {
        let mut sent = 0;
        while let Some((seq, batch)) = self.spool.oldest()? {
            let events = <v1::EventBatch as prost::Message>::decode(batch.as_slice())
                .map_or(0, |b| b.events.len() as u64);
            let body = Body {
                bytes: batch.into(),
                media_type: "application/x-protobuf",
            };
            let result =
                self.runtime
                    .block_on(self.client.call(Method::POST, "/events", Some(body)));
            match self.guard(result) {
                Ok(_) => {
                    self.spool.remove(seq, false)?;
                    sent += events;
                }
                Err(AgentError::Http {
                    status: 400 | 413 | 422,
                    ..
                }) => {
                    tracing::warn!(seq, "the server refused an event batch; dropped");
                    self.spool.remove(seq, true)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }

    fn find(&self, snapshot: &str) -> Result<(BlockId, Snapshot), AgentError> {
        let mut all = self.snapshots()?;
        if snapshot == "latest" {
            return all
                .pop()
                .ok_or_else(|| AgentError::Usage("no snapshot yet".into()));
        }
        let mut found = all
            .into_iter()
            .filter(|(id, _)| id.to_string().starts_with(&snapshot.to_ascii_lowercase()));
        match (found.next(), found.next()) {
            (Some(one), None) if !snapshot.is_empty() => Ok(one),
            (Some(_), Some(_)) => Err(AgentError::Usage(format!(
                "snapshot {snapshot} is ambiguous: give more digits"
            ))),
            _ => Err(AgentError::Usage(format!("no snapshot {snapshot}"))),
        }
    }

    /// Restores `snapshot` (an id, a unique prefix of one, or `latest`), whole or only `path`
    /// inside it, into `to` (which must not exist or be empty). Every block is authenticated.
    ///
    /// # Errors
    /// [`AgentError::History`] (as [`Agent::snapshots`]); [`AgentError::Usage`] for an unknown
    /// snapshot; [`AgentError::Backup`].
    pub fn restore(
        &self,
        snapshot: &str,
        path: Option<&str>,
        to: &Path,
    ) -> Result<RestoreSummary, AgentError> {
        let (_, snap) = self.find(snapshot)?;
        let result = match path {
            Some(p) => self.repo.restore_path(&snap, p, to),
            None => self.repo.restore(&snap, to),
        };
        self.guard(result.map_err(AgentError::from))
    }

    /// Checks every snapshot's structure and, with `read_data`, opens every data block.
    ///
    /// # Errors
    /// [`AgentError::History`] for a server whose history is shorter than or different from
    /// this agent's chain head; [`AgentError`] if the check could not run (problems found are
    /// in the report).
    pub fn check(&self, read_data: bool) -> Result<CheckReport, AgentError> {
        // The history first: a check of what is left after a cut would find "no problem".
        self.snapshots()?;
        self.guard(self.repo.check(read_data).map_err(AgentError::from))
    }

    /// A handle on the watcher's observations waiting in the spool, readable from another
    /// thread while [`Agent::run`] holds the agent.
    #[must_use]
    pub fn observations(&self) -> Observations {
        Observations(Arc::clone(&self.spool))
    }

    /// The configuration, chain head and spool.
    ///
    /// # Errors
    /// [`AgentError`] for unreadable local state.
    pub fn status(&self) -> Result<Status, AgentError> {
        Ok(Status {
            config: self.config.clone(),
            head: self.dir.head()?.map(|h| h.to_string()),
            spool: self.spool.stats()?,
        })
    }
}

/// How often `run` looks for file systems mounted (or unmounted) below the exposure
/// destinations.
const MOUNT_CHECK: Duration = Duration::from_secs(5);

/// The mount points strictly below any of `dirs` (Linux: `/proc/self/mounts`; elsewhere
/// none), sorted.
fn mounts_below(dirs: &[PathBuf]) -> Vec<PathBuf> {
    if dirs.is_empty() {
        return Vec::new();
    }
    std::fs::read_to_string("/proc/self/mounts")
        .map(|table| parse_mounts_below(&table, dirs))
        .unwrap_or_default()
}

/// [`mounts_below`] over a mount table's text (`/proc/self/mounts` format: the mount point is
/// the second field, with space, tab, newline and backslash written as octal escapes).
fn parse_mounts_below(table: &str, dirs: &[PathBuf]) -> Vec<PathBuf> {
    let unescape = |field: &str| -> String {
        let mut out = String::with_capacity(field.len());
        let mut rest = field;
        while let Some(i) = rest.find('\\') {
            out.push_str(&rest[..i]);
            let code = rest
                .get(i + 1..i + 4)
                .and_then(|o| u8::from_str_radix(o, 8).ok());
            match code {
                Some(c) => {
                    out.push(char::from(c));
                    rest = &rest[i + 4..];
                }
                None => {
                    out.push('\\');
                    rest = &rest[i + 1..];
                }
            }
        }
        out.push_str(rest);
        out
    };
    let mut out: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(1))
        .map(|field| PathBuf::from(unescape(field)))
        .filter(|m| dirs.iter().any(|d| m.starts_with(d) && m != d))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether two lists of absolute folders name the same set.
fn same_set(a: &[PathBuf], b: &[PathBuf]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort();
    b.sort();
    a == b
}

/// The envelope the mode calls for.
fn envelope(
    key: &ArchiveKey,
    config: &Config,
    escrow: &EscrowPublicKey,
    mode: Escrow,
) -> Result<Envelope, AgentError> {
    let (mode, recipient): (Mode, Box<dyn Recipient>) = match mode {
        Escrow::Standard => (Mode::Standard, Box::new(EscrowRecipient(escrow.clone()))),
        Escrow::ArchivePassword(p) => (
            Mode::ArchivePassword,
            Box::new(PasswordEscrowRecipient::new(
                escrow.clone(),
                p,
                Argon2Params::DEFAULT,
            )?),
        ),
        Escrow::CustomKey(p) => (
            Mode::CustomKey,
            Box::new(PasswordRecipient::new(p, Argon2Params::DEFAULT)?),
        ),
    };
    let header = Header::new(mode, key.fingerprint(), &config.tenant, &config.user)?;
    Ok(Envelope::wrap(key, header, &[recipient.as_ref()])?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn mounts_below_the_destinations_are_found_and_unescaped() {
        let table = "\
/dev/vda1 / ext4 rw,relatime 0 0
proc /proc proc rw 0 0
/dev/sdb1 /media/ana/USB\\040STICK vfat rw 0 0
/dev/sdc1 /media/ana/backup\\134disk ext4 rw 0 0
server:/share /mnt/share nfs4 rw 0 0
tmpfs /media tmpfs rw 0 0
";
        let dirs = [PathBuf::from("/media"), PathBuf::from("/srv")];
        assert_eq!(
            parse_mounts_below(table, &dirs),
            [
                PathBuf::from("/media/ana/USB STICK"),
                PathBuf::from("/media/ana/backup\\disk"),
            ]
        );
        // A mount on a destination itself is not "below" it; no destinations, nothing.
        assert!(parse_mounts_below("tmpfs /srv tmpfs rw 0 0\n", &dirs).is_empty());
        assert!(parse_mounts_below(table, &[]).is_empty());
        // A stray backslash is kept as it is.
        assert_eq!(
            parse_mounts_below("x /srv/a\\b y 0 0\n", &dirs),
            [PathBuf::from("/srv/a\\b")]
        );
    }
}
