//! Shared by the agent's end-to-end tests: a real server on 127.0.0.1 (real TLS, the real
//! router and storage) and generated folders.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::fs;
use std::net::SocketAddr;
use std::path::Path;

use cairn_agent::{Agent, Enrollment, Escrow, state::AgentDir};
use cairn_server::{DataDir, Embedded, RateConfig};

pub const TENANT: &str = "acme";

/// A server and its tenant's administrator.
pub struct World {
    /// The server's runtime: dropping it is a crash (every connection dies with it).
    pub rt: Option<tokio::runtime::Runtime>,
    pub server: Option<Embedded>,
    pub addr: SocketAddr,
    pub admin: String,
    pub http: reqwest::Client,
    pub data: DataDir,
    pub dir: tempfile::TempDir,
}

fn rates() -> RateConfig {
    RateConfig {
        auth_failures_per_minute: 1_000_000,
        auth_failure_burst: 1_000_000,
        ..RateConfig::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn client(data: &DataDir) -> reqwest::Client {
    let ca = fs::read(data.pki().dir().join("ca.pem")).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(cairn_agent::tls::client_config(&ca).unwrap())
        .build()
        .unwrap()
}

pub fn world() -> World {
    // The embedded defaults, or PostgreSQL and S3 (CAIRN_TEST_BACKENDS=shared, scripts/test.sh).
    world_on(|rt| rt.block_on(cairn_server::testenv::from_env()).unwrap())
}

/// A world on the embedded defaults whatever the environment asks: for tests that reach into
/// the server's data directory (its segments on local disk, its SQLite database).
pub fn world_embedded() -> World {
    world_on(|_| cairn_server::Backends::default())
}

/// A world whose archives seal a segment every few KiB (the archive's minimum target), so
/// that a few small backups leave sealed segments for prune to compact.
pub fn world_small_segments() -> World {
    world_on_data(
        |rt| rt.block_on(cairn_server::testenv::from_env()).unwrap(),
        // The archive's minimum target (`cairn_archive::MIN_SEGMENT_TARGET`).
        |data| data.with_segment_target(4 << 10),
    )
}

fn world_on(backends: impl FnOnce(&tokio::runtime::Runtime) -> cairn_server::Backends) -> World {
    world_on_data(backends, |data| data)
}

fn world_on_data(
    backends: impl FnOnce(&tokio::runtime::Runtime) -> cairn_server::Backends,
    data: impl FnOnce(DataDir) -> DataDir,
) -> World {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let backends = backends(&rt);
    let data = data(DataDir::at(dir.path().join("server")).with_backends(backends));
    let server = rt
        .block_on(Embedded::start_with(
            data.clone(),
            "127.0.0.1:0".parse().unwrap(),
            rates(),
        ))
        .unwrap();
    let admin = rt
        .block_on(server.add_tenant(TENANT, "root", 1 << 40))
        .unwrap();
    let http = client(&data);
    World {
        rt: Some(rt),
        addr: server.addr(),
        server: Some(server),
        admin,
        http,
        data,
        dir,
    }
}

impl World {
    pub fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("the server is running")
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// What the server stores and exports for a file digest: its tenant-keyed form (hex), as
    /// `cairn_server::KeyRing::tenant_hash` makes it (docs/format/events.md §4.1).
    pub fn keyed(&self, algorithm: &str, digest: &[u8]) -> String {
        let server = self.server.as_ref().expect("the server is running");
        hex::encode(
            server
                .services()
                .ring
                .tenant_hash(TENANT, algorithm, digest),
        )
    }

    /// An administrator's call: status and body.
    pub fn admin_call(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> (u16, Vec<u8>) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url()))
            .bearer_auth(&self.admin);
        if let Some(b) = body {
            req = req.body(b);
        }
        self.rt().block_on(async {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
        })
    }

    /// Adds `user` and registers a device for them: (device id, enrollment token).
    pub fn register(&self, user: &str) -> (String, String) {
        let body = serde_json::json!({"id": user, "role": "user"}).to_string();
        let (status, _) = self.admin_call(
            "POST",
            &format!("/v1/tenants/{TENANT}/users"),
            Some(body.into_bytes()),
        );
        // 409: the user exists (a second device of theirs).
        assert!(matches!(status, 200 | 201 | 409), "adding user: {status}");
        let body = serde_json::json!({"user": user, "name": "laptop"}).to_string();
        let (status, reply) = self.admin_call(
            "POST",
            &format!("/v1/tenants/{TENANT}/devices"),
            Some(body.into_bytes()),
        );
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&reply));
        let v: serde_json::Value = serde_json::from_slice(&reply).unwrap();
        (
            v["device"].as_str().unwrap().to_owned(),
            v["token"].as_str().unwrap().to_owned(),
        )
    }

    /// Registers a device for `user` and enrolls an agent for it in `dir`.
    pub fn enroll(&self, user: &str, dir: &Path) -> Agent {
        let (device, token) = self.register(user);
        let ca = fs::read(self.data.pki().dir().join("ca.pem")).unwrap();
        Agent::enroll(
            &AgentDir::at(dir),
            Enrollment {
                server: &self.url(),
                ca_pem: &ca,
                tenant: TENANT,
                device: &device,
                token: &token,
                host: "test-host",
                escrow: Escrow::Standard,
            },
        )
        .unwrap()
    }

    /// Every event of the tenant, as OCSF JSON objects.
    pub fn events(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/v1/tenants/{TENANT}/events?after={a}"),
                None => format!("/v1/tenants/{TENANT}/events"),
            };
            let (status, body) = self.admin_call("GET", &path, None);
            assert_eq!(status, 200);
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            out.extend(v["events"].as_array().unwrap().iter().cloned());
            match v["next"].as_str() {
                Some(n) => after = Some(n.to_owned()),
                None => return out,
            }
        }
    }

    /// Crashes the server: its runtime is dropped with every task and connection (the data
    /// directory stays).
    pub fn crash(&mut self) {
        self.server = None;
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        }
    }

    /// Stops the server cleanly: the accept loop ends, the database closes, the runtime and
    /// every task with it are gone, so the data directory is at rest (a copy is consistent).
    pub fn stop(&mut self) {
        let server = self.server.take().expect("the server is running");
        let services = std::sync::Arc::clone(server.services());
        let rt = self.rt.take().expect("the server is running");
        rt.block_on(async {
            server.shutdown().await.unwrap();
            services.db.close().await;
        });
        drop(services);
        rt.shutdown_timeout(std::time::Duration::from_secs(5));
    }

    /// Starts the server again on the same address and data directory.
    pub fn restart(&mut self) {
        let rt = runtime();
        let server = rt
            .block_on(Embedded::start_with(self.data.clone(), self.addr, rates()))
            .unwrap();
        self.server = Some(server);
        self.rt = Some(rt);
        self.http = client(&self.data);
    }
}

/// A deterministic pseudo-random byte stream (xorshift), so that files do not compress away.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
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

/// A tree with unicode names, empty files, a large file, nested folders, a symlink and
/// unusual permissions; `marker` is written into file contents and one file name.
pub fn make_tree(root: &Path, marker: &str, large: usize) {
    fs::create_dir_all(root.join("docs/über/深い")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::write(
        root.join("docs/report.txt"),
        format!("quarterly {marker} numbers\n"),
    )
    .unwrap();
    fs::write(
        root.join("docs/über/naïve café.md"),
        format!("# {marker}\n"),
    )
    .unwrap();
    fs::write(root.join("docs/über/深い/ファイル.bin"), noise(7, 100_000)).unwrap();
    fs::write(root.join("empty.txt"), b"").unwrap();
    fs::write(root.join(format!("name-{marker}.txt")), b"x").unwrap();
    fs::write(root.join("large.bin"), noise(11, large)).unwrap();
    let mut many = Vec::new();
    for i in 0..200 {
        many.extend_from_slice(format!("line {i} {marker}\n").as_bytes());
    }
    fs::write(root.join("docs/many-lines.txt"), many).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::os::unix::fs::symlink("docs/report.txt", root.join("link-to-report")).unwrap();
        fs::set_permissions(
            root.join("docs/report.txt"),
            fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        let script = root.join("run.sh");
        fs::write(&script, b"#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// Every entry below `root`: relative path, kind, mode bits, contents or link target.
pub fn listing(root: &Path) -> Vec<(String, String, u32, Vec<u8>)> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String, u32, Vec<u8>)>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(fs::DirEntry::file_name);
        for e in entries {
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = fs::symlink_metadata(&path).unwrap();
            #[cfg(unix)]
            let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
            #[cfg(not(unix))]
            let mode = 0;
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).unwrap();
                out.push((
                    rel,
                    "link".into(),
                    0,
                    target.to_string_lossy().as_bytes().to_vec(),
                ));
            } else if meta.is_dir() {
                out.push((rel, "dir".into(), mode, Vec::new()));
                walk(root, &path, out);
            } else {
                out.push((rel, "file".into(), mode, fs::read(&path).unwrap()));
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// Whether `needle` occurs in any file below `root`.
pub fn find_bytes(root: &Path, needle: &[u8]) -> Option<std::path::PathBuf> {
    for entry in fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            if let Some(p) = find_bytes(&path, needle) {
                return Some(p);
            }
        } else if meta.is_file() {
            let bytes = fs::read(&path).unwrap();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                return Some(path);
            }
        }
    }
    None
}

/// `Agent::run` on a thread, with short intervals: each backup's change counts (or its error,
/// as text) arrive on `reports`.
pub struct Running {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// One report per backup attempt.
    pub reports: std::sync::mpsc::Receiver<Result<[u64; 4], String>>,
    thread: std::thread::JoinHandle<(Agent, Result<(), cairn_agent::AgentError>)>,
}

/// Starts `agent.run` over `folder` (200 ms interval, 100 ms debounce, 50 ms tick).
pub fn run_in_background(agent: Agent, folder: &Path) -> Running {
    run_folders_in_background(agent, &[folder.to_path_buf()])
}

/// [`run_in_background`] over several folders (none: the agent's own).
pub fn run_folders_in_background(mut agent: Agent, folders: &[std::path::PathBuf]) -> Running {
    use std::time::Duration;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, reports) = std::sync::mpsc::channel();
    let thread = {
        let stop = std::sync::Arc::clone(&stop);
        let folders = folders.to_vec();
        std::thread::spawn(move || {
            let opts = cairn_agent::RunOptions {
                interval: Duration::from_millis(200),
                full_scan: Duration::from_secs(3600),
                debounce: Duration::from_millis(100),
                tick: Duration::from_millis(50),
            };
            let result = agent.run(&folders, &opts, &stop, |r| {
                let _ = tx.send(r.map(|r| r.changes).map_err(ToString::to_string));
            });
            (agent, result)
        })
    };
    Running {
        stop,
        reports,
        thread,
    }
}

impl Running {
    /// The next backup's report (waiting up to a minute).
    pub fn next(&self) -> Result<[u64; 4], String> {
        self.reports
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("a backup report within a minute")
    }

    /// Stops the run (after its current backup) and gives the agent back.
    pub fn stop(self) -> Agent {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let (agent, result) = self.thread.join().unwrap();
        result.unwrap();
        agent
    }
}

/// Starts this test binary again to run only the ignored test `name` (a server process of a
/// crash or scale-out test), with `envs`; returns once it prints `ready …`, and keeps draining
/// its output so that it never blocks on a full pipe.
pub fn spawn_test_process(name: &str, envs: &[(&str, String)]) -> std::process::Child {
    use std::io::BufRead;
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--ignored", "--exact", name, "--nocapture"])
        .stdout(std::process::Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("the child process ended").unwrap();
        if line.starts_with("ready ") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    child
}

/// A loopback address no one listens on (yet).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[cfg(unix)]
#[path = "../../../backup/tests/common/unix.rs"]
pub mod unix;

/// `TENANT` as an id, for the database's calls.
pub fn tenant_id() -> cairn_token::TenantId {
    cairn_token::TenantId::new(TENANT).unwrap()
}

/// A user id, for the database's calls.
pub fn user_id(user: &str) -> cairn_token::UserId {
    cairn_token::UserId::new(user).unwrap()
}
